SELECT $$a; b$$, $tag$ $$; $tag$, $_x1$ ; $_x1$;
