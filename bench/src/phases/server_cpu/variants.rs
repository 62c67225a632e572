//! The requests `--server-cpu` compares, each with its unmeasured setup.

use redis::Connection;

/// Readies round `r`'s keys for `n` requests.
type Prepare = Box<dyn Fn(&mut Connection, usize, usize)>;
/// Puts request `i` of round `r` in a pipeline.
type Add = Box<dyn Fn(&mut redis::Pipeline, usize, usize)>;

/// One kind of request: `prepare` readies round `r`'s keys for `n`
/// requests (unmeasured), `add` puts request `i` of round `r` in a pipeline.
pub(crate) struct Variant {
    pub name: &'static str,
    pub prepare: Prepare,
    pub add: Add,
    /// Every request is refused with an error by design (a sold-out
    /// EXINCRBY ... MIN 0); otherwise a run in which all are is broken.
    pub refused: bool,
}

/// Units a sold-out key sold before a round, one per open reservation.
const SOLD: usize = 10_000;

const SECKILL: &str = include_str!("../../../lua/seckill.lua");

fn set_big(c: &mut Connection, cmd: &str, key: String) {
    let _: () = redis::cmd(cmd)
        .arg(key)
        .arg(crate::common::BIG)
        .query(c)
        .unwrap();
}

fn txid(r: usize, i: usize) -> String {
    crate::common::tagged_txid(&format!("{r}-"), i)
}

fn reserve(p: &mut redis::Pipeline, key: String, r: usize, i: usize) {
    p.cmd("INV.RESERVE")
        .arg(key)
        .arg(txid(r, i))
        .arg(1)
        .arg("TTL")
        .arg(crate::common::TTL);
}

/// A reserve for a buyer seen for the first time (the seckill script's
/// case: one order per buyer).
fn reserve_buyer(p: &mut redis::Pipeline, key: String, r: usize, i: usize) {
    reserve(p, key, r, i);
    p.arg("BUYER").arg(format!("buyer-{i:010}"));
}

/// The seckill Lua for a new buyer on `key` (its stock; the buyer set and
/// the order stream share its hash tag), no sale window.
fn seckill(p: &mut redis::Pipeline, sha: &str, key: &str, r: usize, i: usize) {
    p.cmd("EVALSHA")
        .arg(sha)
        .arg(3)
        .arg(key)
        .arg(format!("{key}:buyers"))
        .arg(format!("{key}:orders"))
        .arg(format!("buyer-{i:010}"))
        .arg(1)
        .arg(txid(r, i))
        .arg(0)
        .arg(0);
}

/// A key with a per-buyer limit of one unit.
fn limit_one(c: &mut Connection, key: &str) {
    let _: () = redis::cmd("INV.RULES")
        .arg(key)
        .arg("LIMIT")
        .arg(1)
        .query(c)
        .unwrap();
}

/// A key holding `n` open reservations of round `r`, to confirm or cancel.
fn reserved(c: &mut Connection, key: &str, r: usize, n: usize) {
    set_big(c, "INV.SET", key.to_string());
    crate::common::run(c, n, 1000, |p, i| {
        reserve(p, key.to_string(), r, i);
        p.ignore();
    });
}

/// The script's SHA, loaded on the server behind `c`.
fn load_script(c: &mut Connection, src: &str) -> String {
    crate::common::load(c, src)
}

fn variant(
    name: &'static str,
    prepare: impl Fn(&mut Connection, usize, usize) + 'static,
    add: impl Fn(&mut redis::Pipeline, usize, usize) + 'static,
) -> Variant {
    Variant {
        name,
        prepare: Box::new(prepare),
        add: Box::new(add),
        refused: false,
    }
}

/// What `--server-cpu` compares: INV.RESERVE (fresh txid, TTL) stocked and
/// sold out, without and with a new buyer on a key with a per-buyer limit,
/// with the change feed on,
/// INV.CONFIRM and INV.CANCEL of open reservations; HINCRBY (the floor), the
/// seed Lua reserve, the barrier-style Lua TCC try, the seckill Lua (buyer
/// set, window, decrement, XADD; a new buyer each request) stocked and sold
/// out and,
/// when `TAIRSTRING_MODULE` is set, TairString's `EXINCRBY key -1 MIN 0`
/// stocked and sold out.
pub(crate) fn variants() -> Vec<Variant> {
    let seed_sha = redis::Script::new(crate::common::SEED)
        .get_hash()
        .to_string();
    let seckill_sha = redis::Script::new(SECKILL).get_hash().to_string();
    let seckill_sold_out_sha = seckill_sha.clone();
    let mut v = vec![
        variant(
            "INV.RESERVE stocked",
            |c, r, _| set_big(c, "INV.SET", format!("cpu:stocked:{r}")),
            |p, r, i| reserve(p, format!("cpu:stocked:{r}"), r, i),
        ),
        variant(
            "INV.RESERVE sold out",
            |c, r, _| {
                let key = format!("cpu:soldout:{r}");
                let _: () = redis::cmd("INV.SET").arg(&key).arg(SOLD).query(c).unwrap();
                crate::common::fill(c, &key, 0, SOLD, "sold-");
            },
            |p, r, i| reserve(p, format!("cpu:soldout:{r}"), r, i),
        ),
        variant(
            "INV.RESERVE BUYER stocked",
            |c, r, _| {
                let key = format!("cpu:buyer:{r}");
                set_big(c, "INV.SET", key.clone());
                limit_one(c, &key);
            },
            |p, r, i| reserve_buyer(p, format!("cpu:buyer:{r}"), r, i),
        ),
        variant(
            "INV.RESERVE BUYER sold out",
            |c, r, _| {
                let key = format!("cpu:buyer0:{r}");
                let _: () = redis::cmd("INV.SET").arg(&key).arg(SOLD).query(c).unwrap();
                crate::common::fill(c, &key, 0, SOLD, "sold-");
                limit_one(c, &key);
            },
            |p, r, i| reserve_buyer(p, format!("cpu:buyer0:{r}"), r, i),
        ),
        variant(
            "INV.RESERVE FEED stocked",
            |c, r, _| {
                let key = format!("cpu:feed:{r}");
                set_big(c, "INV.SET", key.clone());
                let _: () = redis::cmd("INV.RULES")
                    .arg(&key)
                    .arg("FEED")
                    .arg("ON")
                    .query(c)
                    .unwrap();
            },
            |p, r, i| reserve(p, format!("cpu:feed:{r}"), r, i),
        ),
        variant(
            "INV.CONFIRM",
            |c, r, n| reserved(c, &format!("cpu:confirm:{r}"), r, n),
            |p, r, i| {
                p.cmd("INV.CONFIRM")
                    .arg(format!("cpu:confirm:{r}"))
                    .arg(txid(r, i));
            },
        ),
        variant(
            "INV.CANCEL",
            |c, r, n| reserved(c, &format!("cpu:cancel:{r}"), r, n),
            |p, r, i| {
                p.cmd("INV.CANCEL")
                    .arg(format!("cpu:cancel:{r}"))
                    .arg(txid(r, i));
            },
        ),
        variant(
            "HINCRBY",
            |_, _, _| {},
            |p, r, _| {
                p.cmd("HINCRBY")
                    .arg(format!("cpu:floor:{r}"))
                    .arg("n")
                    .arg(1);
            },
        ),
        variant(
            "seed Lua",
            |c, r, _| {
                load_script(c, crate::common::SEED);
                let _: () = redis::cmd("HSET")
                    .arg(format!("cpu:seed:{r}"))
                    .arg("stock")
                    .arg(crate::common::BIG)
                    .arg("reserved")
                    .arg(0)
                    .query(c)
                    .unwrap();
            },
            move |p, r, i| {
                p.cmd("EVALSHA")
                    .arg(&seed_sha)
                    .arg(1)
                    .arg(format!("cpu:seed:{r}"))
                    .arg(txid(r, i))
                    .arg(1);
            },
        ),
        variant(
            "barrier Lua",
            |c, r, _| {
                let _: String = redis::cmd("FUNCTION")
                    .arg("LOAD")
                    .arg("REPLACE")
                    .arg(crate::phases::deployed::barrier_library())
                    .query(c)
                    .unwrap();
                set_big(c, "SET", format!("{{cpu:bar:{r}}}"));
            },
            |p, r, i| {
                let t = txid(r, i);
                p.cmd("FCALL")
                    .arg("barrier_try")
                    .arg(3)
                    .arg(format!("{{cpu:bar:{r}}}"))
                    .arg(format!("{{cpu:bar:{r}}}:try:{t}"))
                    .arg(format!("{{cpu:bar:{r}}}:rollback:{t}"))
                    .arg(1)
                    .arg(crate::common::TTL / 1000);
            },
        ),
        variant(
            "seckill Lua",
            |c, r, _| {
                load_script(c, SECKILL);
                set_big(c, "SET", format!("{{cpu:sk:{r}}}"));
            },
            move |p, r, i| seckill(p, &seckill_sha, &format!("{{cpu:sk:{r}}}"), r, i),
        ),
        variant(
            "seckill Lua sold out",
            |c, r, _| {
                load_script(c, SECKILL);
                let _: () = redis::cmd("SET")
                    .arg(format!("{{cpu:sk0:{r}}}"))
                    .arg(0)
                    .query(c)
                    .unwrap();
            },
            move |p, r, i| seckill(p, &seckill_sold_out_sha, &format!("{{cpu:sk0:{r}}}"), r, i),
        ),
    ];
    if crate::phases::deployed::tairstring().is_some() {
        v.push(variant(
            "EXINCRBY stocked",
            |c, r, _| set_big(c, "EXSET", format!("cpu:tair:{r}")),
            |p, r, _| {
                p.cmd("EXINCRBY")
                    .arg(format!("cpu:tair:{r}"))
                    .arg(-1)
                    .arg("MIN")
                    .arg(0);
            },
        ));
        v.push(Variant {
            refused: true,
            ..variant(
                "EXINCRBY sold out",
                |c, r, _| {
                    let _: () = redis::cmd("EXSET")
                        .arg(format!("cpu:tair0:{r}"))
                        .arg(0)
                        .query(c)
                        .unwrap();
                },
                |p, r, _| {
                    p.cmd("EXINCRBY")
                        .arg(format!("cpu:tair0:{r}"))
                        .arg(-1)
                        .arg("MIN")
                        .arg(0);
                },
            )
        });
    }
    v
}
