use seedship_proto::identity::Role;
use seedship_proto::pb;
use tonic::{Request, Response, Status};

use super::Api;
use crate::service::Cmd;

const SOURCE: &[Role] = &[Role::Source];

#[tonic::async_trait]
impl pb::seed_service_server::SeedService for Api {
    async fn register_seed(
        &self,
        req: Request<pb::RegisterSeedRequest>,
    ) -> Result<Response<pb::RegisterSeedResponse>, Status> {
        let owner = self.auth.require(&req, "RegisterSeed", SOURCE)?;
        let cmd = Cmd::try_from(req.into_inner())?;
        let reg = self.core.register_seed(&owner, cmd).await?;
        Ok(Response::new(pb::RegisterSeedResponse { seed: Some(reg.seed.into()), created: reg.created }))
    }

    async fn list_own_seeds(
        &self,
        req: Request<pb::ListOwnSeedsRequest>,
    ) -> Result<Response<pb::ListOwnSeedsResponse>, Status> {
        let owner = self.auth.require(&req, "ListOwnSeeds", SOURCE)?;
        let seeds = self.core.own_seeds(&owner).await?;
        Ok(Response::new(pb::ListOwnSeedsResponse { seeds: seeds.into_iter().map(Into::into).collect() }))
    }

    async fn get_repairs(
        &self,
        req: Request<pb::GetRepairsRequest>,
    ) -> Result<Response<pb::GetRepairsResponse>, Status> {
        let owner = self.auth.require(&req, "GetRepairs", SOURCE)?;
        let orders = self.core.repair_orders(&owner).await?;
        Ok(Response::new(pb::GetRepairsResponse { orders: orders.into_iter().map(Into::into).collect() }))
    }

    async fn get_vault(&self, req: Request<pb::GetVaultRequest>) -> Result<Response<pb::GetVaultResponse>, Status> {
        let owner = self.auth.require(&req, "GetVault", SOURCE)?;
        let a = self.core.vault_access(&owner, req.into_inner().write).await?;
        let place = seedship_azure::blob::VaultPlace::parse(&a.vault.container);
        Ok(Response::new(pb::GetVaultResponse {
            blob_endpoint: a.endpoint,
            container: place.container,
            prefix: place.prefix,
            sas: a.sas,
            sas_expires_unix_ms: a.expires_ms,
            points: a.points.into_iter().map(Into::into).collect(),
        }))
    }

    async fn report_recovery_point(
        &self,
        req: Request<pb::ReportRecoveryPointRequest>,
    ) -> Result<Response<pb::ReportRecoveryPointResponse>, Status> {
        let owner = self.auth.require(&req, "ReportRecoveryPoint", SOURCE)?;
        let r = req.into_inner();
        let id = r.snapshot_id.clone();
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(crate::error::Error::invalid("snapshot_id", "expected 64 lowercase hex characters").into());
        }
        for f in &r.index_files {
            if f.len() != 64 || !f.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(
                    crate::error::Error::invalid("index_files", "expected 64 lowercase hex characters each").into()
                );
            }
        }
        if r.packs.len() > 10_000 {
            return Err(crate::error::Error::invalid("packs", "at most 10000 packs in one report").into());
        }
        let mut packs = Vec::with_capacity(r.packs.len());
        for p in r.packs {
            seedship_repo::manifest::check_path(&p.name)
                .ok()
                .filter(|_| p.name.starts_with("data/"))
                .ok_or_else(|| crate::error::Error::invalid("packs", format!("{:?} is not a pack's name", p.name)))?;
            crate::domain::validate::hex_digest("packs.md5", &p.md5, 16)?;
            crate::domain::validate::bytes("packs.size", p.size)?;
            packs.push((p.name, p.size, p.md5));
        }
        let p = self.core.report_recovery_point(&owner, Cmd { request_id: r.request_id, body: id }, &packs).await?;
        if !r.index_files.is_empty() {
            self.core.prune_vault_index(&owner, &r.index_files).await;
        }
        Ok(Response::new(pb::ReportRecoveryPointResponse { point: Some(p.into()) }))
    }

    async fn report_staging_deleted(
        &self,
        req: Request<pb::ReportStagingDeletedRequest>,
    ) -> Result<Response<pb::ReportStagingDeletedResponse>, Status> {
        let owner = self.auth.require(&req, "ReportStagingDeleted", SOURCE)?;
        let r = req.into_inner();
        crate::grpc::convert::seed_key("seed_id", &r.seed_id)?;
        crate::domain::validate::bytes("bytes", r.bytes)?;
        let seed = self.core.staging_deleted(&owner, &r.seed_id, r.bytes).await?;
        Ok(Response::new(pb::ReportStagingDeletedResponse { seed: Some(seed.into()) }))
    }

    async fn report_repair(
        &self,
        req: Request<pb::ReportRepairRequest>,
    ) -> Result<Response<pb::ReportRepairResponse>, Status> {
        let owner = self.auth.require(&req, "ReportRepair", SOURCE)?;
        let cmd = Cmd::try_from(req.into_inner())?;
        let seed = self.core.report_repair(&owner, cmd).await?;
        Ok(Response::new(pb::ReportRepairResponse { seed: Some(seed.into()) }))
    }
}
