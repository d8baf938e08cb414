//! `tokenctl list`.

use token_core::{ListFilter, MAX_PAGE_SIZE, Page, TokenRecord};

use crate::cli::{Global, ListArgs};
use crate::connect::{Hashing, manager};
use crate::error::{CliError, Outcome};
use crate::output::print_records;

/// Lists the records matching the filters, page by page, in creation order.
pub async fn run(global: &Global, args: ListArgs) -> Result<Outcome, CliError> {
    let manager = manager(global, Hashing::NotNeeded, None).await?;
    let now = manager.clock().now();
    let mut filter = ListFilter::all();
    if let Some(subject) = args.subject {
        filter = filter.subject(subject);
    }
    for (key, value) in args.labels {
        filter = filter.label(key, value);
    }
    if let Some(state) = args.state {
        filter = filter.state(state.into());
    }
    if let Some(family) = args.family {
        filter = filter.family(family);
    }
    if let Some(since) = args.unused_since {
        filter = filter.unused_since(since.resolve(now));
    }
    let records = collect(args.limit, |page| manager.list(filter.clone(), page)).await?;
    print_records(&records, global.json)?;
    Ok(Outcome::Success)
}

/// Reads pages from `fetch` until the last one, or until `limit` records.
pub async fn collect<F, Fut>(
    limit: Option<usize>,
    mut fetch: F,
) -> Result<Vec<TokenRecord>, CliError>
where
    F: FnMut(Page) -> Fut,
    Fut: std::future::Future<Output = Result<token_core::TokenPage, token_core::Error>>,
{
    let mut records = Vec::new();
    let mut page = Page::first(MAX_PAGE_SIZE);
    loop {
        let remaining = limit.map(|limit| limit.saturating_sub(records.len()));
        if remaining == Some(0) {
            return Ok(records);
        }
        if let Some(remaining) = remaining {
            page.limit = u32::try_from(remaining)
                .unwrap_or(MAX_PAGE_SIZE)
                .min(MAX_PAGE_SIZE);
        }
        let result = fetch(page).await?;
        records.extend(result.items);
        match result.next {
            Some(cursor) => page = Page::after(cursor, MAX_PAGE_SIZE),
            None => return Ok(records),
        }
    }
}
