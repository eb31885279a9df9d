-- Tools agents may call.

-- UP
CREATE TABLE IF NOT EXISTS tool_definitions (
  id VARCHAR(36) PRIMARY KEY,
  client_id VARCHAR(36) NOT NULL REFERENCES client_registrations (id) ON DELETE CASCADE,
  name VARCHAR(255) NOT NULL,
  description TEXT,
  input_schema TEXT NOT NULL DEFAULT '{}',
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_tool_definitions_client ON tool_definitions (client_id);

-- DOWN
DROP INDEX IF EXISTS idx_tool_definitions_client;
DROP TABLE IF EXISTS tool_definitions;
