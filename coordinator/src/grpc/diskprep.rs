use seedship_proto::identity::Role;
use seedship_proto::pb;
use tonic::{Request, Response, Status};

use super::Api;
use super::convert::{self, DriveCmd};
use crate::observe;
use crate::service::Cmd;

const COPY: &[Role] = &[Role::Copy];

#[tonic::async_trait]
impl pb::disk_prep_service_server::DiskPrepService for Api {
    async fn claim_work(&self, req: Request<pb::ClaimWorkRequest>) -> Result<Response<pb::ClaimWorkResponse>, Status> {
        timed("ClaimWork", async move {
            let station = self.auth.require(&req, "ClaimWork", COPY)?;
            let cmd = Cmd::try_from(req.into_inner())?;
            let lease = self.core.claim(&station, cmd).await?;
            Ok(Response::new(pb::ClaimWorkResponse { lease: lease.map(Into::into) }))
        })
        .await
    }

    async fn renew_lease(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        timed("RenewLease", async move {
            let station = self.auth.require(&req, "RenewLease", COPY)?;
            let mut r = req.into_inner();
            let disks = convert::disk_progress(std::mem::take(&mut r.disks))?;
            let cmd = Cmd::try_from(r)?;
            let fence = cmd.body.0.clone();
            let expires = self.core.renew(&station, cmd).await?;
            self.core.record_disks(&station, &fence, disks).await;
            Ok(Response::new(pb::RenewLeaseResponse { expires_unix_ms: expires }))
        })
        .await
    }

    async fn report_progress(
        &self,
        req: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::ReportProgressResponse>, Status> {
        timed("ReportProgress", async move {
            let station = self.auth.require(&req, "ReportProgress", COPY)?;
            let mut r = req.into_inner();
            let disks = convert::disk_progress(std::mem::take(&mut r.disks))?;
            let cmd = Cmd::try_from(r)?;
            let fence = cmd.body.0.clone();
            let added = cmd.body.1.to - cmd.body.1.from;
            let (progress, expires) = self.core.progress(&station, cmd).await?;
            observe::station_bytes(&station.name, added);
            self.core.record_disks(&station, &fence, disks).await;
            Ok(Response::new(pb::ReportProgressResponse { progress_bytes: progress, expires_unix_ms: expires }))
        })
        .await
    }

    async fn report_drive(
        &self,
        req: Request<pb::ReportDriveRequest>,
    ) -> Result<Response<pb::ReportDriveResponse>, Status> {
        timed("ReportDrive", async move {
            let station = self.auth.require(&req, "ReportDrive", COPY)?;
            let c = DriveCmd::try_from(req.into_inner())?;
            let drive = self.core.report_drive(&station, c.request_id, c.fence, c.drive).await?;
            Ok(Response::new(pb::ReportDriveResponse { drive: Some(drive.into()) }))
        })
        .await
    }

    async fn complete_work(
        &self,
        req: Request<pb::CompleteWorkRequest>,
    ) -> Result<Response<pb::CompleteWorkResponse>, Status> {
        timed("CompleteWork", async move {
            let station = self.auth.require(&req, "CompleteWork", COPY)?;
            let cmd = Cmd::try_from(req.into_inner())?;
            let seed = self.core.complete(&station, cmd).await?;
            // The datacenter's address for the seed's Azure location, for the label.
            // From the coordinator's cache only: recording a station's work never waits on Azure.
            let address = match self.core.shipping_address(&seed.spec.subscription_id, &seed.spec.location) {
                // Microsoft's disks go back in Microsoft's box, with its prepaid return label.
                _ if seed.kind == crate::domain::model::DiskKind::DataboxDisk => {
                    vec!["Microsoft's return label, in the Data Box Disk box (every delivered disk goes back)".to_string()]
                }
                Ok(lines) => lines,
                Err(why) => vec![format!(
                    "address pending: the shipping address of Azure location {} could not be read ({why}); `seedctl job {}` shows it once the import job is created",
                    seed.spec.location, seed.spec.job_name
                )],
            };
            Ok(Response::new(pb::CompleteWorkResponse { seed: Some(seed.into()), shipping_address: address }))
        })
        .await
    }

    async fn get_drive_key(
        &self,
        req: Request<pb::GetDriveKeyRequest>,
    ) -> Result<Response<pb::GetDriveKeyResponse>, Status> {
        timed("GetDriveKey", async move {
            let station = self.auth.require(&req, "GetDriveKey", COPY)?;
            let (fence, drive_id) = convert::drive_key_request(req.into_inner())?;
            let key = self.core.drive_key(&station, &fence, &drive_id).await?;
            Ok(Response::new(pb::GetDriveKeyResponse { recovery_password: key.0 }))
        })
        .await
    }

    async fn get_lease_passkey(
        &self,
        req: Request<pb::GetLeasePasskeyRequest>,
    ) -> Result<Response<pb::GetLeasePasskeyResponse>, Status> {
        timed("GetLeasePasskey", async move {
            let station = self.auth.require(&req, "GetLeasePasskey", COPY)?;
            let fence = convert::lease_passkey_request(req.into_inner())?;
            let key = self.core.lease_passkey(&station, &fence).await?;
            Ok(Response::new(pb::GetLeasePasskeyResponse { passkey: key.0 }))
        })
        .await
    }

    async fn release_work(
        &self,
        req: Request<pb::ReleaseWorkRequest>,
    ) -> Result<Response<pb::ReleaseWorkResponse>, Status> {
        timed("ReleaseWork", async move {
            let station = self.auth.require(&req, "ReleaseWork", COPY)?;
            let cmd = Cmd::try_from(req.into_inner())?;
            self.core.release(&station, cmd).await?;
            Ok(Response::new(pb::ReleaseWorkResponse {}))
        })
        .await
    }
}

/// Runs one lease operation, counted with its outcome and latency for `/metrics`.
async fn timed<T>(op: &'static str, f: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    let t = std::time::Instant::now();
    let r = f.await;
    observe::lease_op(op, observe::outcome(r.as_ref().err().map(|s| s.code())), t.elapsed());
    r
}
