#[mw::service]
pub trait Svc {
    #[oneway(eventually)]
    async fn log(&self, line: String);
}

fn main() {}
