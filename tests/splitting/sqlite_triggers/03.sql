create temporary trigger t3 after update on notes begin
  delete from audit where note_id = old.id;
end;
