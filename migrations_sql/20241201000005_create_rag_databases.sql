-- Retrieval-augmented generation stores attached to agents.

-- UP
CREATE TABLE IF NOT EXISTS rag_databases (
  id VARCHAR(36) PRIMARY KEY,
  agent_id VARCHAR(36) NOT NULL REFERENCES agent_definitions (id) ON DELETE CASCADE,
  name VARCHAR(255) NOT NULL,
  embedding_model VARCHAR(100) NOT NULL,
  dimensions INTEGER NOT NULL CHECK (dimensions > 0),
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_rag_databases_agent ON rag_databases (agent_id);

-- DOWN
DROP INDEX IF EXISTS idx_rag_databases_agent;
DROP TABLE IF EXISTS rag_databases;
