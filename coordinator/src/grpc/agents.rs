use seedship_proto::identity::Role;
use seedship_proto::pb;
use tonic::{Request, Response, Status};

use super::Api;
use crate::service::Cmd;

const AGENTS: &[Role] = &[Role::Source, Role::Copy];

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for Api {
    async fn register_agent(
        &self,
        req: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        let who = self.auth.require(&req, "RegisterAgent", AGENTS)?;
        let cmd = Cmd::try_from(req.into_inner())?;
        let agent = self.core.register_agent(&who, cmd).await?;
        Ok(Response::new(pb::RegisterAgentResponse {
            agent: Some(agent.into()),
            heartbeat_interval_secs: self.core.settings().heartbeat_interval.as_secs() as u32,
        }))
    }

    async fn renew_certificate(
        &self,
        req: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
        let who = self.auth.require(&req, "RenewCertificate", AGENTS)?;
        let ca = self.enroller.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this coordinator does not issue certificates ([enroll] is not configured); ask an operator for a new one",
            )
        })?;
        let r = req.into_inner();
        let e = self.core.renew_certificate(&ca, &who, &r.csr_pem, r.client_time_unix_ms).await?;
        Ok(Response::new(pb::RenewCertificateResponse {
            certificate_pem: e.cert_pem,
            ca_pem: e.ca_pem,
            not_after_unix_ms: e.not_after_ms,
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let who = self.auth.require(&req, "Heartbeat", AGENTS)?;
        let cmd = Cmd::try_from(req.into_inner())?;
        let at = self.core.heartbeat(&who, cmd).await?;
        Ok(Response::new(pb::HeartbeatResponse {
            server_time_unix_ms: at,
            heartbeat_interval_secs: self.core.settings().heartbeat_interval.as_secs() as u32,
        }))
    }
}
