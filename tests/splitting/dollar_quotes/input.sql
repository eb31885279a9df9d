SELECT $$a; b$$, $tag$ $$; $tag$, $_x1$ ; $_x1$;
DO $$
BEGIN
  RAISE NOTICE 'in DO; %', 1;
  COMMIT;
END
$$;
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$
BEGIN
  RETURN 1; -- END;
END;
$body$;
SELECT $é$ ; $é$;
