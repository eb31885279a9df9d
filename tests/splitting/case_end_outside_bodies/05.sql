SELECT 'c';
