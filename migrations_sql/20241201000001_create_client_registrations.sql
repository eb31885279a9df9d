-- Clients that registered with the agent server.

-- UP
CREATE TABLE IF NOT EXISTS client_registrations (
  id VARCHAR(36) PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  contact_email VARCHAR(255),
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_client_registrations_name ON client_registrations (name);

-- DOWN
DROP INDEX IF EXISTS idx_client_registrations_name;
DROP TABLE IF EXISTS client_registrations;
