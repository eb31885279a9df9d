SELECT 'a;b', 'it''s; quoted', E'c\';d', e'\\', E'\\\'' AS "e;f", "g""h;" FROM (SELECT 1 AS "g""h;") AS s;
