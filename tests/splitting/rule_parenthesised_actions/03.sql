SELECT 'after';
