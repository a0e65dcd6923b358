-- Two pagers share this table (Alertmanager notifies both, so a page survives the loss of
-- either): the pager whose insert of a page won records itself in `claimed_by` and sends the
-- page; `sent_at` is set once it went out. A page claimed by a pager that died before sending
-- it (its advisory lock is gone) is taken over and sent by another (ioc.services.pager).
-- Pages from before, and the escalator's, have no claim and are never taken over.
ALTER TABLE pages ADD COLUMN claimed_by integer;
ALTER TABLE pages ADD COLUMN sent_at timestamptz;
CREATE INDEX pages_unsent_idx ON pages (id) WHERE claimed_by IS NOT NULL AND sent_at IS NULL;
