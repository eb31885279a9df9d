-- Agents a client has defined.

-- UP
CREATE TABLE IF NOT EXISTS agent_definitions (
  id VARCHAR(36) PRIMARY KEY,
  client_id VARCHAR(36) NOT NULL REFERENCES client_registrations (id) ON DELETE CASCADE,
  name VARCHAR(255) NOT NULL,
  instructions TEXT NOT NULL,
  model VARCHAR(100) NOT NULL,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_agent_definitions_client ON agent_definitions (client_id);

-- DOWN
DROP INDEX IF EXISTS idx_agent_definitions_client;
DROP TABLE IF EXISTS agent_definitions;
