DO $$
BEGIN
  RAISE NOTICE 'in DO; %', 1;
  COMMIT;
END
$$;
