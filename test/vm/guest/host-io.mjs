// Guest side of test/interop-host-nvmet.test.ts, the tsblk half: ONE node process (each node
// start costs seconds under TCG) that drives the kernel's nvmet-tcp target through tsblk's
// NVMe/TCP host, from dist/ (the test builds it):
//  1. the CLI, in-process through run() from dist/cli/main.js (what bin/tsblk.js calls; the exit
//     code is the one bin/tsblk.js would exit with): discover, connect, id-ctrl, id-ns of every
//     namespace (--json, saved in $OUT for the test to compare with nvme-cli's decode) — while
//     the kernel host is still connected, so the two controllers coexist;
//  2. `nvme disconnect` of the kernel host (tsblk's own I/O runs alone);
//  3. per round of PLAN (the library: NvmeController + RemoteNamespace, readFully/writeFully,
//     issueCopy): writes of the planned sizes with distinct patterns, each read back and
//     compared, flush, Write Zeroes, Deallocate, issueCopy auto (nvmet has no Copy: emulated)
//     and forced offload (EOPNOTSUPP); commands and R2T PDUs are counted per operation by
//     wrapping the controller's submitIo and the PDU parser;
//  4. the CLI again: `tsblk copy` in auto mode and with --mode offload, then `tsblk connect`
//     to a subsystem NQN nvmet does not have.
// Prints `fact: KEY=VALUE` lines (test/vm/guest/lib.sh conventions). The process must end by
// itself: a socket or timer left open would keep it alive and the guest script's `timeout`
// would report it.
//
// env: PLAN (JSON, see the test's HostPlan), OUT (a directory shared with the host), NQN,
//      BAD_NQN, ADDR (127.0.0.1), PORT (4420)

import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../../../dist/cli/main.js';
import { NvmeController } from '../../../dist/host/controller.js';
import { issueCopy } from '../../../dist/block/copy.js';
import { readFully, writeFully } from '../../../dist/block/io.js';
import { inlineBytesFromIoccsz } from '../../../dist/nvme/identify.js';
import { IoOpcode } from '../../../dist/nvme/opcodes.js';
import { PduParser } from '../../../dist/nvme/tcp/parser.js';
import { PduType } from '../../../dist/nvme/tcp/pdu.js';

const plan = JSON.parse(process.env.PLAN ?? '{}');
const OUT = process.env.OUT ?? '/tmp';
const NQN = process.env.NQN ?? '';
const BAD_NQN = process.env.BAD_NQN ?? '';
const ADDR = process.env.ADDR ?? '127.0.0.1';
const PORT = Number(process.env.PORT ?? 4420);
const ADDRESS = `${ADDR}:${PORT}`;

const oneLine = (s) =>
  String(s)
    .replace(/\s*\n\s*/g, ' | ')
    .trim();
const fact = (k, v) => process.stdout.write(`fact: ${k}=${oneLine(v)}\n`);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const ms = (t0) => Math.round(performance.now() - t0);

/** Block `lba` of a pattern: "tsblk TAG lba NNNNNNNNNN |" repeated, cut to lbs bytes. */
function pattern(tag, lba, blocks, lbs) {
  const out = Buffer.alloc(blocks * lbs);
  for (let i = 0; i < blocks; i++) {
    const s = `tsblk ${tag} lba ${String(lba + i).padStart(10, '0')} |`;
    out.write(s.repeat(Math.ceil(lbs / s.length)).slice(0, lbs), i * lbs, 'latin1');
  }
  return out;
}

/** "ok", or where the first difference is. */
function compare(got, want) {
  if (got.equals(want)) return 'ok';
  let i = 0;
  while (i < got.length && got[i] === want[i]) i++;
  return `mismatch at byte ${i} of ${want.length}`;
}

/** "CODE: message" (a BlockError's message starts with its code already). */
function errorText(err) {
  if (!(err instanceof Error)) return String(err);
  const code = err.code ?? err.name;
  return err.message.startsWith(`${code}: `) ? err.message : `${code}: ${err.message}`;
}

// ---- observation: PDUs the host receives, commands it submits --------------------------

const seen = { r2t: 0, r2tBytes: 0, icrespDgst: [] };
const realNext = PduParser.prototype.next;
PduParser.prototype.next = function next() {
  const pdu = realNext.call(this);
  if (pdu?.type === PduType.R2T) {
    seen.r2t++;
    seen.r2tBytes += pdu.r2tl;
  } else if (pdu?.type === PduType.ICResp) seen.icrespDgst.push(pdu.dgst);
  return pdu;
};

/** Counts the I/O commands a controller submits, by opcode. */
function countCommands(controller) {
  const counts = new Map();
  const submit = controller.submitIo.bind(controller);
  controller.submitIo = (cmd) => {
    counts.set(cmd.sqe.opcode, (counts.get(cmd.sqe.opcode) ?? 0) + 1);
    return submit(cmd);
  };
  return {
    reset() {
      counts.clear();
      seen.r2t = seen.r2tBytes = 0;
    },
    get: (opcode) => counts.get(opcode) ?? 0,
  };
}

// ---- the CLI, in-process -----------------------------------------------------------------

/** Runs one tsblk command line; stdout goes to $OUT/KEY.out, the rest into facts. */
async function cli(key, argv) {
  let stdout = '';
  let stderr = '';
  const io = { stdout: { write: (s) => (stdout += s) }, stderr: { write: (s) => (stderr += s) } };
  const t0 = performance.now();
  let rc;
  try {
    rc = await run(argv, io);
  } catch (err) {
    rc = `threw ${errorText(err)}`;
  }
  writeFileSync(`${OUT}/${key}.out`, stdout);
  fact(`${key}_cmd`, `tsblk ${argv.join(' ')}`);
  fact(`${key}_rc`, rc);
  fact(`${key}_ms`, ms(t0));
  fact(`${key}_stderr`, stderr || '-');
  return { rc, stdout, stderr };
}

// ---- the library: one round of I/O on one namespace --------------------------------------

async function ioRound(r) {
  const p = r.name;
  const t0 = performance.now();
  seen.icrespDgst = [];
  let c;
  try {
    c = await NvmeController.connect({
      address: { host: ADDR, port: PORT },
      subnqn: NQN,
      headerDigest: r.digests,
      dataDigest: r.digests,
    });
  } catch (err) {
    fact(`${p}_connect`, errorText(err));
    return;
  }
  fact(`${p}_connect`, 'ok');
  const count = countCommands(c);
  try {
    // 1 + one ICResp per I/O queue: the digests nvmet granted on every connection
    fact(`${p}_icresp_dgst`, seen.icrespDgst.join(','));
    fact(`${p}_io_queues`, c.ioQueueCount);
    fact(`${p}_inline_bytes`, inlineBytesFromIoccsz(c.idCtrl.ioccsz));
    fact(`${p}_mdts_bytes`, c.maxDataTransferBytes);
    const ns = c.namespace(r.nsid);
    const lbs = ns.limits.logicalBlockSize;
    fact(`${p}_lbs`, lbs);
    fact(`${p}_size`, ns.size);
    fact(`${p}_max_transfer`, ns.limits.maxTransferBytes);
    fact(`${p}_vwc`, ns.details().volatileWriteCache);
    fact(`${p}_copy_limits`, ns.limits.copy ? JSON.stringify(ns.limits.copy) : 'none');
    fact(`${p}_can_copy`, ns.canCopyFrom(ns));
    if (lbs !== r.lbs || ns.size !== r.blocks * r.lbs) {
      fact(`${p}_geometry`, `unexpected: ${ns.size} bytes of ${lbs}-byte blocks`);
      return;
    }
    const at = (region) => region.lba * lbs;
    const fill = (region) => pattern(`${p}/${region.key}`, region.lba, region.blocks, lbs);

    for (const w of r.writes) {
      const k = `${p}_${w.key}`;
      const data = fill(w);
      count.reset();
      try {
        await writeFully(ns, at(w), data);
        fact(`${k}_write`, 'ok');
      } catch (err) {
        fact(`${k}_write`, errorText(err));
      }
      fact(`${k}_write_cmds`, count.get(IoOpcode.WRITE));
      fact(`${k}_r2t`, seen.r2t);
      fact(`${k}_r2t_bytes`, seen.r2tBytes);
      count.reset();
      const back = Buffer.alloc(data.length);
      try {
        await readFully(ns, at(w), back);
        fact(`${k}_read`, 'ok');
      } catch (err) {
        fact(`${k}_read`, errorText(err));
      }
      fact(`${k}_read_cmds`, count.get(IoOpcode.READ));
      fact(`${k}_verify`, compare(back, data));
      fact(`${k}_sha256`, sha256(back));
    }

    count.reset();
    try {
      await ns.flush();
      fact(`${p}_flush`, 'ok');
    } catch (err) {
      fact(`${p}_flush`, errorText(err));
    }
    fact(`${p}_flush_cmds`, count.get(IoOpcode.FLUSH));

    // Write Zeroes and Deallocate over a pattern, so a command that did nothing shows
    for (const [op, region, cmdOpcode, doIt] of [
      ['zeroes', r.zeroes, IoOpcode.WRITE_ZEROES, () => ns.writeZeroes(at(r.zeroes), r.zeroes.blocks * lbs)],
      ['discard', r.discard, IoOpcode.DSM, () => ns.discard(at(r.discard), r.discard.blocks * lbs)],
    ]) {
      const k = `${p}_${op}`;
      await writeFully(ns, at(region), fill(region));
      count.reset();
      try {
        await doIt();
        fact(k, 'ok');
      } catch (err) {
        fact(k, errorText(err));
      }
      fact(`${k}_cmds`, count.get(cmdOpcode));
      fact(`${k}_write_cmds`, count.get(IoOpcode.WRITE));
      const back = Buffer.alloc(region.blocks * lbs);
      await readFully(ns, at(region), back);
      fact(
        `${k}_read_zero`,
        back.every((b) => b === 0),
      );
      fact(`${k}_sha256`, sha256(back));
    }

    // issueCopy within the namespace: auto must fall back to emulation (no ONCS Copy) ...
    const { src, dst, offloadDst } = r.copy;
    const len = src.blocks * lbs;
    count.reset();
    try {
      const res = await issueCopy(ns, ns, [{ src: at(src), dst: at(dst), len }]);
      fact(`${p}_copy`, 'ok');
      fact(
        `${p}_copy_result`,
        JSON.stringify({
          bytes: res.bytes,
          offloaded: res.offloaded,
          emulated: res.emulated,
          path: res.ranges[0]?.path,
        }),
      );
    } catch (err) {
      fact(`${p}_copy`, errorText(err));
    }
    fact(
      `${p}_copy_cmds`,
      `read ${count.get(IoOpcode.READ)} write ${count.get(IoOpcode.WRITE)} copy ${count.get(IoOpcode.COPY)}`,
    );
    const back = Buffer.alloc(len);
    await readFully(ns, at(dst), back);
    fact(`${p}_copy_dst_sha256`, sha256(back));
    // ... and forced offload must refuse before sending anything
    count.reset();
    try {
      await issueCopy(ns, ns, [{ src: at(src), dst: at(offloadDst), len }], { mode: 'offload' });
      fact(`${p}_offload`, 'ok');
    } catch (err) {
      fact(`${p}_offload`, errorText(err));
    }
    fact(
      `${p}_offload_cmds`,
      [IoOpcode.READ, IoOpcode.WRITE, IoOpcode.COPY].reduce((n, o) => n + count.get(o), 0),
    );
    await readFully(ns, at(offloadDst), back);
    fact(`${p}_offload_dst_sha256`, sha256(back));
    await ns.close();
  } catch (err) {
    fact(`${p}_error`, errorText(err));
  } finally {
    await c.disconnect().catch((err) => fact(`${p}_disconnect`, errorText(err)));
    fact(`${p}_state_after`, c.state);
    fact(`${p}_ms`, ms(t0));
  }
}

// ---- the kernel host -------------------------------------------------------------------------

function kernelControllers() {
  const out = [];
  for (const c of readdirSync('/sys/class/nvme')) {
    try {
      if (readFileSync(`/sys/class/nvme/${c}/subsysnqn`, 'utf8').trim() === NQN) out.push(c);
    } catch {
      // gone while we looked
    }
  }
  return out;
}

async function kernelDisconnect() {
  const d = spawnSync('nvme', ['disconnect', '-n', NQN], { encoding: 'utf8' });
  fact('kernel_disconnect_rc', d.status);
  fact('kernel_disconnect_output', `${d.stdout}${d.stderr}`);
  for (let i = 0; i < 100 && kernelControllers().length; i++) await sleep(100);
  fact('kernel_controllers_left', kernelControllers().length);
}

// ---- the sequence ------------------------------------------------------------------------------

const T0 = performance.now();
const url = `nvme-tcp://${ADDRESS}/${NQN}`;
await cli('discover', ['discover', ADDRESS, '--json']);
await cli('connect', ['connect', ADDRESS, '--nqn', NQN, '--json']);
await cli('id_ctrl', ['id-ctrl', url, '--json']);
for (const nsid of plan.nsids ?? []) await cli(`id_ns_${nsid}`, ['id-ns', `${url}/${nsid}`, '--json']);
fact('cli_identify_ms', ms(T0));

await kernelDisconnect();

for (const r of plan.rounds ?? []) await ioRound(r);

const cc = plan.cliCopy;
if (cc) {
  const range = (dst) => `${cc.src * cc.lbs}:${dst * cc.lbs}:${cc.blocks * cc.lbs}`;
  const dev = `${url}/${cc.nsid}`;
  await cli('cli_copy', ['copy', dev, '--range', range(cc.dst), '--json', '--no-progress']);
  // the same copy again, for the summary a person reads
  await cli('cli_copy_text', ['copy', dev, '--range', range(cc.dst), '--no-progress']);
  await cli('cli_offload', [
    'copy',
    dev,
    '--range',
    range(cc.offloadDst),
    '--mode',
    'offload',
    '--json',
    '--no-progress',
  ]);
}

const t = performance.now();
await cli('bad_nqn', ['connect', ADDRESS, '--nqn', BAD_NQN]);
fact('bad_nqn_seconds', ((performance.now() - t) / 1000).toFixed(1));

fact('host_io_ms', ms(T0));
// What would keep the process alive (the guest script also sees whether it exits); a socket
// being closed goes away within a tick or two, so look a moment later.
await sleep(500);
fact(
  'host_io_active_handles',
  process
    .getActiveResourcesInfo()
    .filter((x) => x !== 'TTYWrap' && x !== 'PipeWrap' && x !== 'FSReqCallback')
    .join(',') || 'none',
);
