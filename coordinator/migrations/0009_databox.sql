-- Import jobs are Microsoft.DataBox jobs (api-version 2025-02-01). azure_state holds the job's
-- stage (AwaitingShipmentDetails, ShippedToAzureDC, AtAzureDC, DataCopy, Completed, ...), a
-- drive's state its copy status. Added: the current stage's status and what Azure offers when it
-- waits for the customer, the job's error, and per disk the files its copy log names.
ALTER TABLE import_jobs ADD COLUMN stage_status TEXT NOT NULL DEFAULT '';
ALTER TABLE import_jobs ADD COLUMN actions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE import_jobs ADD COLUMN azure_error TEXT NOT NULL DEFAULT '';
ALTER TABLE job_drives ADD COLUMN copy_errors TEXT NOT NULL DEFAULT '[]';
