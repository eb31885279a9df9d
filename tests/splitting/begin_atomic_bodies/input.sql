CREATE FUNCTION sign_of(x integer) RETURNS text LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x < 0 THEN 'minus; one' WHEN x = 0 THEN 'zero' ELSE 'plus' END;
END;
CREATE OR REPLACE PROCEDURE insert_two(a integer)
LANGUAGE sql
BEGIN ATOMIC
  INSERT INTO t VALUES (a);
  INSERT INTO t VALUES (CASE WHEN a > 0 THEN a + 1 END);
END;
create or replace function /* comment */ lower_case() returns int language sql begin atomic select 1; end;
SELECT sign_of(1);
