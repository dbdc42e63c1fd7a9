#!/usr/bin/env python3
"""Drives an emulated Microsoft.DataBox with Microsoft's own management SDK for Python
(`azure-mgmt-databox`), as a customer's script would drive Azure: every call must succeed and
parse into the SDK's models.

    sdk_databox.py URL CA_FILE SUBSCRIPTION RESOURCE_GROUP STORAGE_ACCOUNT_ID

Covers: operations, validate inputs, region configuration (the datacenter address), create
(long-running), get with details, list by resource group and by subscription (paged), update
with If-Match, mark devices shipped, list credentials, cancel, delete (long-running), and the
errors the SDK raises for an unknown job and a stale ETag. Prints one line per step; exits 1 on
the first failure.
"""

import sys
import time

from azure.core import MatchConditions
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.databox import DataBoxManagementClient
from azure.mgmt.databox import models as m


class StaticToken:
    """The emulator checks that a bearer token is there, not what it says."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("emulated-token", int(time.time()) + 3600)


def step(name, ok):
    if not ok:
        print(f"FAIL {name}", flush=True)
        sys.exit(1)
    print(f"ok   {name}", flush=True)


def customer_disk_job(account_id, serial):
    details = m.DataBoxCustomerDiskJobDetails(
        contact_details=m.ContactDetails(contact_name="Ops", phone="+1 555 0100", email_list=["ops@example.com"]),
        shipping_address=m.ShippingAddress(
            street_address1="1 Backup Way", city="Redmond", state_or_province="WA", country="US", postal_code="98052"
        ),
        data_import_details=[m.DataImportDetails(account_details=m.StorageAccountDetails(storage_account_id=account_id))],
        import_disk_details_collection={
            serial: m.ImportDiskDetails(
                manifest_file="\\DriveManifest.xml",
                manifest_hash="0123456789ABCDEF0123456789ABCDEF",
                bit_locker_key="111111-222222-333333-444444-555555-666666-777777-888888",
            )
        },
        return_to_customer_package_details=m.PackageCarrierDetails(carrier_name="FedEx", carrier_account_number="123456789"),
    )
    return m.JobResource(
        location="westus",
        sku=m.Sku(name="DataBoxCustomerDisk"),
        properties=m.JobProperties(transfer_type="ImportToAzure", details=details),
    )


def main():
    url, ca, sub, rg, account_id = sys.argv[1:6]
    client = DataBoxManagementClient(
        StaticToken(),
        sub,
        base_url=url,
        api_version="2025-02-01",
        connection_verify=ca,
        credential_scopes=["https://management.azure.com/.default"],
        polling_interval=0,
        retry_total=0,
    )

    ops = list(client.operations.list())
    step(f"operations.list ({len(ops)} operations)", len(ops) > 0 and all(o.name.startswith("Microsoft.DataBox/") for o in ops))

    v = client.service.validate_inputs(
        "westus",
        m.CreateJobValidations(
            individual_request_details=[
                m.SkuAvailabilityValidationRequest(
                    device_type="DataBoxCustomerDisk", transfer_type="ImportToAzure", country="US", location="westus"
                ),
                m.DataTransferDetailsValidationRequest(
                    device_type="DataBoxCustomerDisk",
                    transfer_type="ImportToAzure",
                    data_import_details=[
                        m.DataImportDetails(account_details=m.StorageAccountDetails(storage_account_id=account_id))
                    ],
                ),
            ]
        ),
    )
    vp = v.properties
    step(f"service.validate_inputs ({vp.status})", vp.status == "AllValidToProceed" and len(vp.individual_response_details) == 2)

    rc = client.service.region_configuration(
        "westus",
        m.RegionConfigurationRequest(
            datacenter_address_request=m.DatacenterAddressRequest(storage_location="westus", sku_name="DataBoxCustomerDisk")
        ),
    )
    addr = rc.datacenter_address_response
    step(
        f"service.region_configuration ({type(addr).__name__}: {getattr(addr, 'city', None)})",
        isinstance(addr, m.DatacenterAddressLocationResponse) and addr.street1 and addr.city,
    )

    names = ["sdk-job-1", "sdk-job-2", "sdk-job-3"]
    for i, name in enumerate(names):
        job = client.jobs.begin_create(rg, name, customer_disk_job(account_id, f"SDKSERIAL{i}")).result()
        step(f"jobs.begin_create {name} ({job.properties.status})", job.name == name and job.properties.status == "AwaitingShipmentDetails")

    job = client.jobs.get(rg, "sdk-job-1", expand="details")
    d = job.properties.details
    step(
        "jobs.get $expand=details",
        isinstance(d, m.DataBoxCustomerDiskJobDetails)
        and set(d.import_disk_details_collection) == {"SDKSERIAL0"}
        and d.import_disk_details_collection["SDKSERIAL0"].bit_locker_key is None
        and d.datacenter_address is not None
        and [s.stage_name for s in d.job_stages][-1] == "AwaitingShipmentDetails",
    )
    step("jobs.get without $expand has no details", client.jobs.get(rg, "sdk-job-1").properties.details is None)

    by_rg = [j.name for j in client.jobs.list_by_resource_group(rg)]
    step(f"jobs.list_by_resource_group, paged ({by_rg})", sorted(by_rg) == names)
    by_sub = [j.name for j in client.jobs.list()]
    step(f"jobs.list, paged ({len(by_sub)} jobs)", set(names) <= set(by_sub))

    etag = client.jobs.get(rg, "sdk-job-2", cls=lambda resp, obj, headers: resp.http_response.headers.get("ETag"))
    step(f"jobs.get answers an ETag ({etag})", bool(etag))
    upd = m.JobResourceUpdateParameter(
        tags={"seed": "s-2"},
        properties=m.UpdateJobProperties(
            details=m.UpdateJobDetails(
                contact_details=m.ContactDetails(
                    contact_name="Night ops", phone="+1 555 0101", email_list=["night@example.com"]
                )
            )
        ),
    )
    updated = client.jobs.begin_update(
        rg, "sdk-job-2", upd, etag=etag, match_condition=MatchConditions.IfNotModified
    ).result()
    step("jobs.begin_update with If-Match", updated.tags == {"seed": "s-2"})
    again = client.jobs.get(rg, "sdk-job-2", expand="details")
    step("the update is kept", again.properties.details.contact_details.contact_name == "Night ops")
    try:
        client.jobs.begin_update(
            rg, "sdk-job-2", upd, etag=etag, match_condition=MatchConditions.IfNotModified
        ).result()
        step("a stale If-Match is refused", False)
    except HttpResponseError as e:
        step(f"a stale If-Match is refused ({e.status_code} {e.error.code if e.error else ''})", e.status_code == 412)

    client.jobs.mark_devices_shipped(
        job_name="sdk-job-2",
        resource_group_name=rg,
        mark_devices_shipped_request=m.MarkDevicesShippedRequest(
            deliver_to_dc_package_details=m.PackageCarrierInfo(carrier_name="FedEx", tracking_id="SDK-TRACK-2")
        ),
    )
    shipped = client.jobs.get(rg, "sdk-job-2", expand="details")
    step(
        f"jobs.mark_devices_shipped ({shipped.properties.status})",
        shipped.properties.status == "ShippedToAzureDC"
        and shipped.properties.details.deliver_to_dc_package_details.tracking_id == "SDK-TRACK-2",
    )

    creds = list(client.jobs.list_credentials(rg, "sdk-job-1"))
    secrets = creds[0].job_secrets
    step(
        "jobs.list_credentials",
        isinstance(secrets, m.CustomerDiskJobSecrets)
        and secrets.disk_secrets[0].disk_serial_number == "SDKSERIAL0"
        and secrets.disk_secrets[0].bit_locker_key.startswith("111111-"),
    )

    client.jobs.cancel(rg, "sdk-job-1", m.CancellationReason(reason="seed cancelled by the operator"))
    cancelled = client.jobs.get(rg, "sdk-job-1")
    step(
        f"jobs.cancel ({cancelled.properties.status})",
        cancelled.properties.status == "Cancelled" and cancelled.properties.is_deletable,
    )

    client.jobs.begin_delete(rg, "sdk-job-1").result()
    try:
        client.jobs.get(rg, "sdk-job-1")
        step("jobs.begin_delete", False)
    except ResourceNotFoundError:
        step("jobs.begin_delete (then 404)", True)
    client.jobs.begin_delete(rg, "sdk-job-1").result()
    step("jobs.begin_delete of a job already gone", True)

    try:
        client.jobs.get("no-such-rg", "sdk-job-2")
        step("an unknown resource group is 404", False)
    except ResourceNotFoundError as e:
        step(f"an unknown resource group is 404 ({e.error.code if e.error else ''})", e.error and e.error.code == "ResourceGroupNotFound")
    print("all SDK calls succeeded", flush=True)


if __name__ == "__main__":
    main()
