"""PostgreSQL at the edge: connections and the plain-SQL schema migrations."""
