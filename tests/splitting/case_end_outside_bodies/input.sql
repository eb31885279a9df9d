SELECT CASE WHEN true THEN 'a'
END;
SELECT 'b';
CREATE TABLE "end" (begin integer, "case" text);
INSERT INTO "end" SELECT 1, CASE WHEN false THEN 'x' END;
SELECT 'c';
