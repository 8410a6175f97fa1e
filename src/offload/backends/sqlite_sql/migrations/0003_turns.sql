-- 0003: turns, each owner's last place in a fair queue (NewJob.fair); prune drops old ones.
CREATE TABLE offload_turns (
    queue TEXT NOT NULL,
    owner TEXT NOT NULL,
    turn REAL NOT NULL,
    PRIMARY KEY (queue, owner)
) WITHOUT ROWID;
