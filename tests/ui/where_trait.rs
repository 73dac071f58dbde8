#[mw::service]
pub trait Svc
where
    Self: Sized,
{
    async fn get(&self) -> u64;
}

fn main() {}
