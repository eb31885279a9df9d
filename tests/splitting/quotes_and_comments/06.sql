SELECT 'line
break; inside';
