mod common;
use common::*;
use tradewal::*;

#[test]
fn append_close_reopen() {
    let d = tempdir();
    let wal = Wal::open(small(d.path())).unwrap();
    eprintln!("backend: {}", wal.backend());
    let mut lsns = vec![];
    for i in 0..100 {
        lsns.push(wal.append(&intent(i)).unwrap().wait().unwrap());
    }
    wal.mark_executed(lsns[0]).unwrap().wait().unwrap();
    wal.close().unwrap();
    let wal = Wal::open(small(d.path())).unwrap();
    assert_eq!(wal.recovered().in_doubt.len(), 99);
    assert_eq!(wal.recovered().in_doubt[0].lsn, lsns[1]);
    wal.close().unwrap();
}
