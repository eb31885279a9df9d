SELECT $é$ ; $é$;
