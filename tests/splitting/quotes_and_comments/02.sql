SELECT 1 /* inside; */ ;
