//! The tcp probe's fields that need kprobes or fentry (absent on the 6.18 CI host): part of
//! the guest suite, run inside the kernel guests (Debian's 5.10 and 6.1 have both).
//!
//! - `toa_client_ip`: a SYN carrying a TOA option (kind 254: the real client's address, as
//!   a layer-4 balancer adds it) is sent from a raw socket to a listener of the snooped
//!   peer; the handshake is completed by hand; the server tracker shows the option's
//!   address, and a plain connection to the same listener shows none.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use gala_e2e::ebpf::NftTable;
use gala_e2e::{free_port, Python};

use gala_e2e::tcp_peer::{Offline, Peer};

/// The address the TOA option carries.
const TOA_IP: &str = "203.0.113.7";

/// A TCP client on a raw socket: sends a SYN with MSS and TOA options from
/// 127.0.0.1:@SPORT@ to 127.0.0.1:@DPORT@ (the TOA carrying @TOA@), answers the SYN-ACK with the ACK, prints
/// `established`, then waits for stdin to close.
const RAW_CLIENT: &str = r#"
import random, socket, struct, sys, time
sport, dport, toa_ip = int("@SPORT@"), int("@DPORT@"), "@TOA@"
src = dst = "127.0.0.1"
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def segment(seq, ack, flags, opts=b""):
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (20 + len(opts)) // 4 << 4, flags,
                    65535, 0, 0) + opts
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(h))
    return h[:16] + struct.pack("!H", csum(pseudo + h)) + h[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
isn = random.randrange(1 << 32)
mss = struct.pack("!BBH", 2, 4, 1460)
toa = struct.pack("!BBH", 254, 8, 40000) + socket.inet_aton(toa_ip)
s.sendto(segment(isn, 0, 0x02, mss + toa), (dst, 0))
deadline = time.time() + 10
state = "no syn-ack"
while time.time() < deadline:
    s.settimeout(max(0.01, deadline - time.time()))
    try:
        pkt = s.recv(65535)
    except socket.timeout:
        break
    t = pkt[(pkt[0] & 15) * 4:]
    sp, dp, seq, ack, _, flags = struct.unpack("!HHIIBB", t[:14])
    if sp == dport and dp == sport and flags & 0x12 == 0x12 and ack == (isn + 1) % (1 << 32):
        s.sendto(segment((isn + 1) % (1 << 32), (seq + 1) % (1 << 32), 0x10), (dst, 0))
        state = "established"
        break
print(state, flush=True)
sys.stdin.read()
"#;

#[test]
fn toa_client_ip_comes_from_the_syn_option() {
    gala_e2e::require_kprobes!();
    let mut peer = Peer::spawn();
    let pid = peer.pid();
    let mut probe = Offline::start(pid, r#""samplePeriod":100"#);
    let port: u16 = peer.cmd("listen 0").parse().expect("port");

    // Our raw socket owns no socket on its port: the kernel would answer the SYN-ACK
    // with a reset, which this rule drops.
    let cport = free_port();
    let rst = NftTable::new("toa");
    rst.chain("out", "output")
        .rule("out", &format!("tcp sport {cport} tcp flags rst drop"));
    let mut client = Python::spawn(
        &RAW_CLIENT
            .replace("@SPORT@", &cport.to_string())
            .replace("@DPORT@", &port.to_string())
            .replace("@TOA@", TOA_IP),
    );
    assert_eq!(client.line(), "established");
    peer.cmd(&format!("accept {port}"));
    // And a plain connection to the same listener.
    let _plain = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    peer.cmd(&format!("accept {port}"));

    let deadline = Instant::now() + Duration::from_secs(20);
    let toa_rows = |p: &Offline| {
        p.tracker(pid, "server", port)
            .iter()
            .filter(|r| r["toa_client_ip"] == TOA_IP)
            .count()
    };
    while toa_rows(&probe) == 0 && Instant::now() < deadline {
        probe.read_for(Duration::from_millis(500));
    }
    probe.read_for(Duration::from_secs(6));
    let rows = probe.tracker(pid, "server", port);
    assert!(
        toa_rows(&probe) > 0,
        "no server tracker with toa_client_ip {TOA_IP}: {rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["toa_client_ip"].is_empty()),
        "the plain connection has a TOA address: {rows:?}"
    );
    for r in &rows {
        assert_eq!(r["client_ip"], "127.0.0.1", "{r:?}");
    }
    drop(client);
    drop(rst);
}
