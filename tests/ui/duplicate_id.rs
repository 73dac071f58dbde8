#[mw::service]
pub trait Svc {
    async fn first(&self);
    async fn second(&self);
    #[method(id = 2)]
    async fn third(&self);
}

fn main() {}
