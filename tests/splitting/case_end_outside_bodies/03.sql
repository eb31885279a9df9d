CREATE TABLE "end" (begin integer, "case" text);
