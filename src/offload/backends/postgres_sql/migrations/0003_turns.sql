-- 0003: turns, each owner's last place in a fair queue (NewJob.fair); prune drops old ones.
CREATE TABLE {schema}.turns (
    queue text NOT NULL,
    owner text NOT NULL,
    turn double precision NOT NULL,
    PRIMARY KEY (queue, owner)
);
