#[mw::service]
pub trait Svc {
    async fn get<'a>(&self) -> u64;
}

fn main() {}
