use seedship_proto::identity::Role;
use seedship_proto::pb;
use tonic::{Request, Response, Status};

use super::Api;
use crate::domain::validate;
use crate::service::Cmd;

const OPERATOR: &[Role] = &[Role::Operator];

#[tonic::async_trait]
impl pb::shipping_service_server::ShippingService for Api {
    async fn record_shipping(
        &self,
        req: Request<pb::RecordShippingRequest>,
    ) -> Result<Response<pb::RecordShippingResponse>, Status> {
        let operator = self.auth.require(&req, "RecordShipping", OPERATOR)?;
        let cmd = Cmd::try_from(req.into_inner())?;
        let rec = self.core.record_shipping(&operator, cmd).await?;
        Ok(Response::new(pb::RecordShippingResponse { record: Some(rec.into()) }))
    }

    async fn get_shipping(
        &self,
        req: Request<pb::GetShippingRequest>,
    ) -> Result<Response<pb::GetShippingResponse>, Status> {
        self.auth.require(&req, "GetShipping", OPERATOR)?;
        let job = req.into_inner().job_name;
        validate::job_name(&job)?;
        let rec = self.core.shipping(&job).await?;
        Ok(Response::new(pb::GetShippingResponse { record: Some(rec.into()) }))
    }
}
