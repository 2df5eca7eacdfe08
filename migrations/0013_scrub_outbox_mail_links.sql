-- Mails used to carry their verification or reset link (and so a live
-- token) in the outbox payload until the week-old rows were deleted. Links
-- are now made by stoa-jobs when it sends the mail. Mails already sent or
-- given up on no longer need theirs: drop it, so no token survives in the
-- table or in a dump of it. Mails still waiting keep their link, or they
-- would go out without one.
UPDATE jobs.outbox
SET payload = payload #- '{data,link}'
WHERE kind = 'email.send'
  AND payload ->> 'template' IN ('verify_email', 'reset_password')
  AND (done_at IS NOT NULL OR dead_at IS NOT NULL)
  AND payload -> 'data' ? 'link';
