SELECT 'a;b', 'it''s; quoted', E'c\';d', e'\\', E'\\\'' AS "e;f", "g""h;" FROM (SELECT 1 AS "g""h;") AS s;
/* a /* nested; */ comment; */ SELECT 1 /* inside; */ ; -- after; too
-- a line comment; with a semicolon
SELECT U&'d\0061t\+000061;', B'1010', X'1F', N'national;' ;
SELECT 1 AS a$b$c, 2 AS "$1$x" FROM (SELECT 1) AS v -- a$b$c is no dollar quote
;
PREPARE q (int) AS SELECT $1;
SELECT 'line
break; inside';
