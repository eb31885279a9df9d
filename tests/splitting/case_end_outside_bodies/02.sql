SELECT 'b';
