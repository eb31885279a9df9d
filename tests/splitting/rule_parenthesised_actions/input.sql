CREATE RULE two AS ON INSERT TO t DO ALSO (NOTIFY a; INSERT INTO log VALUES ('b;'));
CREATE OR REPLACE RULE three AS ON DELETE TO t
  DO INSTEAD (
    SELECT (1); -- a comment; with a semicolon
    UPDATE log SET what = 'x' WHERE what IN (SELECT what FROM log);
    NOTIFY c
  );
SELECT 'after';
