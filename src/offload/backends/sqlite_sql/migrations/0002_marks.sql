-- 0002: marks, small named values that leader services advance with compare-and-set.
CREATE TABLE offload_marks (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
