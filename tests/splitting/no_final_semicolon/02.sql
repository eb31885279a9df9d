SELECT 2 -- trailing comment, no semicolon
