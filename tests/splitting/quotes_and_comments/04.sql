SELECT 1 AS a$b$c, 2 AS "$1$x" FROM (SELECT 1) AS v -- a$b$c is no dollar quote
;
