-- SQLite syntax: pglast cannot parse it, so only the expected statements check it.
CREATE TRIGGER notes_audit AFTER INSERT ON notes
BEGIN
  INSERT INTO audit VALUES (NEW.id, 'inserted; really');
  UPDATE audit SET what = CASE WHEN what IS NULL THEN 'x' ELSE what || '!' END WHERE note_id = NEW.id;
END;
CREATE TEMP TRIGGER IF NOT EXISTS t2 BEFORE DELETE ON notes FOR EACH ROW WHEN OLD.id > 0
BEGIN
  SELECT RAISE(ABORT, 'no; deleting');
END;
create temporary trigger t3 after update on notes begin
  delete from audit where note_id = old.id;
end;
END TRANSACTION;
