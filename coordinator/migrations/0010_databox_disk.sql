-- What a seed is shipped on: 'customer_disk' (the operator's own disks, DataBoxCustomerDisk) or
-- 'databox_disk' (Microsoft's disks, DataBoxDisk: ordered, delivered, then written).
ALTER TABLE seeds ADD COLUMN kind TEXT NOT NULL DEFAULT 'customer_disk';
-- 1 for a disk Microsoft delivered for the seed: its key came from Azure (listCredentials).
ALTER TABLE drives ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
-- The Data Box Disk passkey, sealed under the master key (AAD = work id and "passkey"); and
-- whether the customer chose it.
ALTER TABLE import_jobs ADD COLUMN sealed_passkey BLOB;
ALTER TABLE import_jobs ADD COLUMN passkey_user_defined INTEGER NOT NULL DEFAULT 0;
