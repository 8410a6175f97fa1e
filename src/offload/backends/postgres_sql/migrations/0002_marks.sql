-- 0002: marks, small named values that leader services advance with compare-and-set.
CREATE TABLE {schema}.marks (
    name text PRIMARY KEY,
    value text NOT NULL
);
