-- swarm schema v10: mixed fleets (docs/contract.md §5). Each agent records the kind and model it runs, so that
-- status shows them and a relaunch restarts it as what it was. NULL: an agent registered before v10.

ALTER TABLE agents ADD COLUMN kind TEXT;
ALTER TABLE agents ADD COLUMN model TEXT;
