CREATE FUNCTION sign_of(x integer) RETURNS text LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x < 0 THEN 'minus; one' WHEN x = 0 THEN 'zero' ELSE 'plus' END;
END;
