//! `pdf-generator bench-render [N]`: the renderer alone, old against new in
//! one process, for `make bench` (dev/bench.sh) to report side by side.
//!
//! Renders N vouchers three ways on one thread, taking turns in rounds of
//! 50, after a warm-up that builds the product's template and lets the
//! fonts' cuts learn the names:
//! - `whole`: every voucher rendered whole ([`render_voucher`], the renderer
//!   before templates);
//! - `mix`: [`Printer::render`] on names in the drop simulator's mix of
//!   scripts, three in ten of them in scripts the template's fonts lack,
//!   which render whole;
//! - `latin`: [`Printer::render`] on Latin names only, which all stamp.
//!
//! Prints one JSON object: mean microseconds per voucher and mean bytes.

use std::process::ExitCode;
use std::time::Instant;

use crate::order::{Order, OrderId};
use crate::render::{Printer, RenderError, render_voucher};

/// First and last names in the mix of scripts of the drop simulator's
/// (dev/drop/src/load.rs): three first names in ten outside the common Latin
/// ranges (CJK, Greek, Arabic).
const FIRST: [&str; 10] = [
    "Elina",
    "Chloë",
    "Jonas",
    "李娜",
    "Νίκος",
    "فاطمة",
    "Saoirse",
    "Małgorzata",
    "Inés",
    "Kwame",
];
const LAST: [&str; 8] = [
    "Korhonen",
    "Peña",
    "MacDonald-Hart",
    "Nowak",
    "Tanaka",
    "Mensah",
    "Schäfer",
    "Kim",
];
/// The Latin first names of [`FIRST`].
const LATIN_FIRST: [&str; 7] = [
    "Elina",
    "Chloë",
    "Jonas",
    "Saoirse",
    "Małgorzata",
    "Inés",
    "Kwame",
];

pub fn run(n: &str) -> ExitCode {
    let Ok(n) = n.parse::<usize>() else {
        eprintln!("pdf-generator bench-render: N must be a count, not {n:?}");
        return ExitCode::from(2);
    };
    match measure(n.max(1)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pdf-generator bench-render: {e}");
            ExitCode::FAILURE
        }
    }
}

fn order(i: usize, first: &[&str]) -> Order {
    Order {
        order_id: OrderId::parse(&format!("{:032x}", 0x5eed_0000_u128 + i as u128))
            .expect("32 hex digits"),
        sku: "BENCH-RENDER".into(),
        product_name: "Bench drop, limited edition".into(),
        first_name: first[i % first.len()].into(),
        last_name: LAST[(i / first.len()) % LAST.len()].into(),
        created_at: chrono::DateTime::from_timestamp(1_795_000_000 + i as i64, 0)
            .unwrap_or_default(),
        redeem_from: None,
        redeem_until: None,
    }
}

/// A way of rendering an order: its bytes, and whether it was stamped.
type Render<'a> = Box<dyn FnMut(&Order) -> Result<(Vec<u8>, bool), RenderError> + 'a>;

/// One way of rendering, and what it has rendered so far.
struct Way<'a> {
    orders: Vec<Order>,
    render: Render<'a>,
    secs: f64,
    bytes: usize,
    stamped: usize,
}

impl<'a> Way<'a> {
    fn new(
        n: usize,
        first: &[&str],
        render: impl FnMut(&Order) -> Result<(Vec<u8>, bool), RenderError> + 'a,
    ) -> Self {
        Way {
            orders: (0..n).map(|i| order(i, first)).collect(),
            render: Box::new(render),
            secs: 0.0,
            bytes: 0,
            stamped: 0,
        }
    }

    /// Renders orders `range`, timed.
    fn run(&mut self, range: std::ops::Range<usize>) -> Result<(), RenderError> {
        let started = Instant::now();
        for o in &self.orders[range] {
            let (pdf, was_stamped) = (self.render)(o)?;
            self.bytes += pdf.len();
            self.stamped += usize::from(was_stamped);
        }
        self.secs += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn report(&self) -> serde_json::Value {
        let n = self.orders.len();
        let us = self.secs * 1e6 / n as f64;
        serde_json::json!({
            "us_per_voucher": (us * 10.0).round() / 10.0,
            "bytes_per_voucher": self.bytes / n,
            "stamped_share": (self.stamped as f64 / n as f64 * 1000.0).round() / 1000.0,
        })
    }
}

/// How many orders each way renders before the next takes its turn: the
/// ways alternate in rounds, so a machine whose load changes during the run
/// (other processes) slows them all alike and the ratios stay fair.
const ROUND: usize = 50;

fn measure(n: usize) -> Result<serde_json::Value, RenderError> {
    let printer = Printer::load()?;
    let mut ways = [
        Way::new(n, &FIRST, |o| {
            Ok((
                render_voucher(o, o.order_id.as_str(), printer.fonts())?,
                false,
            ))
        }),
        Way::new(n, &FIRST, |o| {
            printer
                .render(o, o.order_id.as_str())
                .map(|v| (v.bytes, v.stamped))
        }),
        Way::new(n, &LATIN_FIRST, |o| {
            printer
                .render(o, o.order_id.as_str())
                .map(|v| (v.bytes, v.stamped))
        }),
    ];
    // Warm-up: the product's template, the fonts' cuts, the allocator.
    for way in &mut ways {
        way.run(0..n.min(FIRST.len() * LAST.len()))?;
        (way.secs, way.bytes, way.stamped) = (0.0, 0, 0);
    }
    for start in (0..n).step_by(ROUND) {
        for way in &mut ways {
            way.run(start..(start + ROUND).min(n))?;
        }
    }
    let [whole, mix, latin] = ways.map(|w| w.report());
    let ratio = |new: &serde_json::Value| {
        let (old, new) = (
            whole["us_per_voucher"].as_f64().unwrap_or(0.0),
            new["us_per_voucher"].as_f64().unwrap_or(f64::INFINITY),
        );
        (old / new * 100.0).round() / 100.0
    };
    Ok(serde_json::json!({
        "vouchers": n,
        "whole": whole,
        "mix": mix,
        "latin": latin,
        "speedup_mix": ratio(&mix),
        "speedup_latin": ratio(&latin),
    }))
}
