CREATE TRIGGER notes_audit AFTER INSERT ON notes
BEGIN
  INSERT INTO audit VALUES (NEW.id, 'inserted; really');
  UPDATE audit SET what = CASE WHEN what IS NULL THEN 'x' ELSE what || '!' END WHERE note_id = NEW.id;
END;
