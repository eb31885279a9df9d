-- Workflows: ordered steps that call agents and tools.

-- UP
CREATE TABLE IF NOT EXISTS workflow_definitions (
  id VARCHAR(36) PRIMARY KEY,
  client_id VARCHAR(36) NOT NULL REFERENCES client_registrations (id) ON DELETE CASCADE,
  name VARCHAR(255) NOT NULL,
  steps TEXT NOT NULL DEFAULT '[]',
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE UNIQUE INDEX IF NOT EXISTS idx_workflow_definitions_client_name ON workflow_definitions (client_id, name);

-- DOWN
DROP INDEX IF EXISTS idx_workflow_definitions_client_name;
DROP TABLE IF EXISTS workflow_definitions;
