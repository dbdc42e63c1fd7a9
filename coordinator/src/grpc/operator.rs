use seedship_proto::identity::Role;
use seedship_proto::pb;
use tonic::{Request, Response, Status};

use super::Api;
use super::convert::{self, limit, optional_role, optional_state, seed_key};

const OPERATOR: &[Role] = &[Role::Operator];

fn opt_key(field: &str, s: &str) -> Result<Option<String>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    seed_key(field, s)?;
    Ok(Some(s.to_string()))
}

#[tonic::async_trait]
impl pb::operator_service_server::OperatorService for Api {
    async fn allow_virtual_station(
        &self,
        req: Request<pb::AllowVirtualStationRequest>,
    ) -> Result<Response<pb::AllowVirtualStationResponse>, Status> {
        let operator = self.auth.require(&req, "AllowVirtualStation", OPERATOR)?;
        let cmd = crate::service::Cmd::try_from(req.into_inner())?;
        let seed = self.core.allow_virtual_station(&operator, cmd).await?;
        Ok(Response::new(pb::AllowVirtualStationResponse { seed: Some(seed.into()) }))
    }

    async fn retry_work(&self, req: Request<pb::RetryWorkRequest>) -> Result<Response<pb::RetryWorkResponse>, Status> {
        let operator = self.auth.require(&req, "RetryWork", OPERATOR)?;
        let cmd = crate::service::Cmd::try_from(req.into_inner())?;
        let seed = self.core.retry_work(&operator, cmd).await?;
        Ok(Response::new(pb::RetryWorkResponse { seed: Some(seed.into()) }))
    }

    async fn requeue_work(
        &self,
        req: Request<pb::RequeueWorkRequest>,
    ) -> Result<Response<pb::RequeueWorkResponse>, Status> {
        let operator = self.auth.require(&req, "RequeueWork", OPERATOR)?;
        let cmd = crate::service::Cmd::try_from(req.into_inner())?;
        let seed = self.core.requeue_work(&operator, cmd).await?;
        Ok(Response::new(pb::RequeueWorkResponse { seed: Some(seed.into()) }))
    }

    async fn reship_lost(
        &self,
        req: Request<pb::ReshipLostRequest>,
    ) -> Result<Response<pb::ReshipLostResponse>, Status> {
        let operator = self.auth.require(&req, "ReshipLost", OPERATOR)?;
        let cmd = crate::service::Cmd::try_from(req.into_inner())?;
        let r = self.core.reship_lost(&operator, cmd).await?;
        Ok(Response::new(pb::ReshipLostResponse {
            seed: Some(r.seed.into()),
            round: Some(r.round.into()),
            files: r.files,
            bytes: r.bytes,
        }))
    }

    async fn cancel_seed(
        &self,
        req: Request<pb::CancelSeedRequest>,
    ) -> Result<Response<pb::CancelSeedResponse>, Status> {
        let operator = self.auth.require(&req, "CancelSeed", OPERATOR)?;
        let cmd = crate::service::Cmd::try_from(req.into_inner())?;
        let seed = self.core.cancel_seed(&operator, cmd).await?;
        Ok(Response::new(pb::CancelSeedResponse { seed: Some(seed.into()) }))
    }

    async fn set_disk_kind(
        &self,
        req: Request<pb::SetDiskKindRequest>,
    ) -> Result<Response<pb::SetDiskKindResponse>, Status> {
        let operator = self.auth.require(&req, "SetDiskKind", OPERATOR)?;
        let cmd = crate::service::Cmd::try_from(req.into_inner())?;
        let seed = self.core.set_disk_kind(&operator, cmd).await?;
        Ok(Response::new(pb::SetDiskKindResponse { seed: Some(seed.into()) }))
    }

    async fn get_passkey(
        &self,
        req: Request<pb::GetPasskeyRequest>,
    ) -> Result<Response<pb::GetPasskeyResponse>, Status> {
        let operator = self.auth.require(&req, "GetPasskey", OPERATOR)?;
        let r = req.into_inner();
        crate::grpc::convert::seed_key("seed", &r.seed)?;
        let (key, user_defined) = self.core.passkey(&operator, &r.seed).await?;
        Ok(Response::new(pb::GetPasskeyResponse { passkey: key.0, user_defined }))
    }

    async fn mitigate(&self, req: Request<pb::MitigateRequest>) -> Result<Response<pb::MitigateResponse>, Status> {
        let operator = self.auth.require(&req, "Mitigate", OPERATOR)?;
        let r = req.into_inner();
        crate::grpc::convert::mitigation(&r)?;
        let job = self.core.mitigate(&operator, &r.job, &r.resolution, &r.disk).await?;
        Ok(Response::new(pb::MitigateResponse { job: Some(crate::grpc::convert::job_to_pb(job, self.core.now())) }))
    }

    async fn list_seeds(&self, req: Request<pb::ListSeedsRequest>) -> Result<Response<pb::ListSeedsResponse>, Status> {
        self.auth.require(&req, "ListSeeds", OPERATOR)?;
        let r = req.into_inner();
        let seeds = self.core.list_seeds(optional_state(r.state)?, limit(r.limit)?).await?;
        Ok(Response::new(pb::ListSeedsResponse {
            seeds: seeds.into_iter().map(Into::into).collect(),
            server_time_unix_ms: self.core.now(),
        }))
    }

    async fn get_seed(&self, req: Request<pb::GetSeedRequest>) -> Result<Response<pb::GetSeedResponse>, Status> {
        self.auth.require(&req, "GetSeed", OPERATOR)?;
        let key = req.into_inner().seed;
        seed_key("seed", &key)?;
        let d = self.core.seed_detail(&key).await?;
        Ok(Response::new(pb::GetSeedResponse {
            seed: Some(d.seed.into()),
            rounds: d.rounds.into_iter().map(Into::into).collect(),
            work: d.work.map(|w| pb::WorkStatus { disks: d.disks.into_iter().map(Into::into).collect(), ..w.into() }),
            drives: d.drives.into_iter().map(Into::into).collect(),
            history: d.history.into_iter().map(Into::into).collect(),
            history_total: d.history_total,
            shipping: d.shipping.map(Into::into),
            server_time_unix_ms: self.core.now(),
        }))
    }

    async fn list_drives(
        &self,
        req: Request<pb::ListDrivesRequest>,
    ) -> Result<Response<pb::ListDrivesResponse>, Status> {
        self.auth.require(&req, "ListDrives", OPERATOR)?;
        let key = opt_key("seed", &req.into_inner().seed)?;
        let drives = self.core.list_drives(key.as_deref()).await?;
        Ok(Response::new(pb::ListDrivesResponse { drives: drives.into_iter().map(Into::into).collect() }))
    }

    async fn list_jobs(&self, req: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.auth.require(&req, "ListJobs", OPERATOR)?;
        let jobs = self.core.list_jobs().await?;
        let now = self.core.now();
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.into_iter().map(|j| convert::job_to_pb(j, now)).collect(),
            server_time_unix_ms: now,
        }))
    }

    async fn get_verification(
        &self,
        req: Request<pb::GetVerificationRequest>,
    ) -> Result<Response<pb::GetVerificationResponse>, Status> {
        self.auth.require(&req, "GetVerification", OPERATOR)?;
        let key = req.into_inner().seed;
        seed_key("seed", &key)?;
        Ok(Response::new(self.core.verification(&key).await?.into()))
    }

    async fn cleanup_import(
        &self,
        req: Request<pb::CleanupImportRequest>,
    ) -> Result<Response<pb::CleanupImportResponse>, Status> {
        let op = self.auth.require(&req, "CleanupImport", OPERATOR)?;
        let key = req.into_inner().seed;
        seed_key("seed", &key)?;
        let (seed, n, bytes) = self.core.cleanup_import(&op.uri(), &key).await?;
        Ok(Response::new(pb::CleanupImportResponse { seed: Some(seed.into()), blobs_deleted: n, bytes_deleted: bytes }))
    }

    async fn list_recovery_points(
        &self,
        req: Request<pb::ListRecoveryPointsRequest>,
    ) -> Result<Response<pb::ListRecoveryPointsResponse>, Status> {
        self.auth.require(&req, "ListRecoveryPoints", OPERATOR)?;
        let server = opt_key("server", &req.into_inner().server)?;
        let points = self.core.recovery_points(server.as_deref()).await?;
        Ok(Response::new(pb::ListRecoveryPointsResponse { points: points.into_iter().map(Into::into).collect() }))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::GetJobResponse>, Status> {
        self.auth.require(&req, "GetJob", OPERATOR)?;
        let key = req.into_inner().job;
        seed_key("job", &key)?;
        let job = self.core.job(&key).await?;
        let mut history = self.core.list_events(Some(&job.seed_id), 1000, 0).await?;
        history.reverse();
        let now = self.core.now();
        Ok(Response::new(pb::GetJobResponse {
            job: Some(convert::job_to_pb(job, now)),
            history: history.into_iter().map(Into::into).collect(),
            server_time_unix_ms: now,
        }))
    }

    async fn list_agents(
        &self,
        req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.auth.require(&req, "ListAgents", OPERATOR)?;
        let role = optional_role(req.into_inner().role)?;
        let agents = self.core.list_agents(role).await?;
        let now = self.core.now();
        let gone_after = self.core.gone_after_ms();
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.into_iter().map(|a| convert::agent_to_pb(a, now, gone_after)).collect(),
            server_time_unix_ms: now,
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.auth.require(&req, "ListEvents", OPERATOR)?;
        let r = req.into_inner();
        let key = opt_key("seed", &r.seed)?;
        let events = self.core.list_events(key.as_deref(), limit(r.limit)?, r.before_event_id).await?;
        Ok(Response::new(pb::ListEventsResponse { events: events.into_iter().map(Into::into).collect() }))
    }

    async fn list_audit(&self, req: Request<pb::ListAuditRequest>) -> Result<Response<pb::ListAuditResponse>, Status> {
        self.auth.require(&req, "ListAudit", OPERATOR)?;
        let r = req.into_inner();
        let lim = if r.limit == 0 { 500 } else { limit(r.limit)? };
        let target = if r.target.is_empty() {
            None
        } else {
            crate::domain::validate::text("target", &r.target, 256)?;
            Some(r.target.as_str())
        };
        let entries = self.core.audit_list(r.after_seq.max(0), lim, target).await?;
        let head_seq = self.core.audit_list_head().await?;
        Ok(Response::new(pb::ListAuditResponse { entries: entries.into_iter().map(Into::into).collect(), head_seq }))
    }

    async fn list_notifications(
        &self,
        req: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        self.auth.require(&req, "ListNotifications", OPERATOR)?;
        let r = req.into_inner();
        let list = self.core.notifications(r.open, limit(r.limit)?).await?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: list.into_iter().map(|(n, d)| convert::notification_to_pb(n, d)).collect(),
        }))
    }

    async fn ack_notification(
        &self,
        req: Request<pb::AckNotificationRequest>,
    ) -> Result<Response<pb::AckNotificationResponse>, Status> {
        let operator = self.auth.require(&req, "AckNotification", OPERATOR)?;
        let r = req.into_inner();
        crate::domain::validate::request_id(&r.request_id)?;
        crate::domain::validate::text("reason", &r.reason, 500)?;
        if r.reason.trim().is_empty() {
            return Err(
                crate::error::Error::invalid("reason", "is required: say why (kept with the acknowledgement)").into()
            );
        }
        let n = self.core.ack_notification(&operator, r.id, &r.reason).await?;
        Ok(Response::new(pb::AckNotificationResponse {
            notification: Some(convert::notification_to_pb(n, Vec::new())),
        }))
    }

    type GetEvidenceStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::EvidenceChunk, Status>> + Send>>;

    async fn get_evidence(
        &self,
        req: Request<pb::GetEvidenceRequest>,
    ) -> Result<Response<Self::GetEvidenceStream>, Status> {
        let operator = self.auth.require(&req, "GetEvidence", OPERATOR)?;
        let key = req.into_inner().seed;
        seed_key("seed", &key)?;
        let signer = self.evidence.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this coordinator's key cannot sign evidence bundles (they need the ECDSA P-256 key `coordinator pki init` makes); see its log",
            )
        })?;
        let files = crate::evidence::bundle(&self.core, &signer, &key).await?;
        tracing::info!(operator = %operator, seed = %key, files = files.len(), "evidence bundle made");
        let chunks: Vec<Result<pb::EvidenceChunk, Status>> = files
            .into_iter()
            .flat_map(|(path, data)| {
                let parts: Vec<Vec<u8>> = if data.is_empty() {
                    vec![Vec::new()]
                } else {
                    data.chunks(256 * 1024).map(<[u8]>::to_vec).collect()
                };
                parts.into_iter().map(move |d| Ok(pb::EvidenceChunk { path: path.clone(), data: d }))
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn create_enroll_token(
        &self,
        req: Request<pb::CreateEnrollTokenRequest>,
    ) -> Result<Response<pb::CreateEnrollTokenResponse>, Status> {
        let operator = self.auth.require(&req, "CreateEnrollToken", OPERATOR)?;
        let fingerprint = self.enroll_ca_fingerprint.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this coordinator does not enroll agents; configure [enroll] (and [web]) and restart it",
            )
        })?;
        let t = crate::service::enroll::NewToken::try_from(req.into_inner())?;
        let (token, info) = self.core.create_enroll_token(&operator, t).await?;
        Ok(Response::new(pb::CreateEnrollTokenResponse {
            token,
            info: Some(info.into()),
            ca_fingerprint: fingerprint,
            enroll_url: self.web_url.clone().map(|u| format!("{}/enroll", u.trim_end_matches('/'))).unwrap_or_default(),
        }))
    }

    async fn list_enroll_tokens(
        &self,
        req: Request<pb::ListEnrollTokensRequest>,
    ) -> Result<Response<pb::ListEnrollTokensResponse>, Status> {
        self.auth.require(&req, "ListEnrollTokens", OPERATOR)?;
        let tokens = self.core.enroll_tokens().await?;
        Ok(Response::new(pb::ListEnrollTokensResponse { tokens: tokens.into_iter().map(Into::into).collect() }))
    }

    async fn revoke_agent(
        &self,
        req: Request<pb::RevokeAgentRequest>,
    ) -> Result<Response<pb::RevokeAgentResponse>, Status> {
        let operator = self.auth.require(&req, "RevokeAgent", OPERATOR)?;
        let cmd = crate::service::Cmd::try_from(req.into_inner())?;
        let r = self.core.revoke_agent(&operator, cmd, &operator.trust_domain).await?;
        Ok(Response::new(pb::RevokeAgentResponse { revocation: Some(r.revocation.into()), released: r.released }))
    }

    async fn list_revocations(
        &self,
        req: Request<pb::ListRevocationsRequest>,
    ) -> Result<Response<pb::ListRevocationsResponse>, Status> {
        self.auth.require(&req, "ListRevocations", OPERATOR)?;
        let all = self.core.revocations().await?;
        Ok(Response::new(pb::ListRevocationsResponse { revocations: all.into_iter().map(Into::into).collect() }))
    }

    async fn create_login_link(
        &self,
        req: Request<pb::CreateLoginLinkRequest>,
    ) -> Result<Response<pb::CreateLoginLinkResponse>, Status> {
        let operator = self.auth.require(&req, "CreateLoginLink", OPERATOR)?;
        let base = self.web_url.clone().ok_or_else(|| {
            Status::failed_precondition("this coordinator has no web dashboard; configure [web] listen and restart it")
        })?;
        let (token, expires) = self.core.create_login(&operator, std::time::Duration::from_secs(600)).await?;
        tracing::info!(operator = %operator, "dashboard login link issued");
        Ok(Response::new(pb::CreateLoginLinkResponse {
            url: format!("{}/login?token={token}", base.trim_end_matches('/')),
            expires_unix_ms: expires,
        }))
    }
}
