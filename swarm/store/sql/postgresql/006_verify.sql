-- swarm schema v6 (mirrors sqlite/006_verify.sql): "done means verified" (docs/contract.md §3). Each task keeps
-- its spec's verify command (NULL: the configuration's [swarm] verify applies; '': no verify) and whether it may
-- finish without a change.

ALTER TABLE tasks ADD COLUMN verify TEXT;
ALTER TABLE tasks ADD COLUMN allow_empty BOOLEAN NOT NULL DEFAULT false;
