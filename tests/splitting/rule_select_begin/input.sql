-- psql tracks only parentheses in a rule: "begin" here is a column, not a body.
CREATE RULE r AS ON INSERT TO t DO ALSO SELECT begin FROM t2; SELECT 2;
CREATE RULE r2 AS ON UPDATE TO t DO INSTEAD SELECT begin, "end" FROM t2 WHERE begin > 0;
SELECT 3;
