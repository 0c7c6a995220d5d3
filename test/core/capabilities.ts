import t from 'tap';
import { capabilities, constants, FEATURES } from '../../lib/index';

t.test('every capability is probed on this kernel (Linux 6.18 has them all)', async (t) => {
  const caps = capabilities();
  t.same(Object.keys(caps).sort(), Object.keys(FEATURES).sort(), 'one capability per documented feature');
  for (const [name, value] of Object.entries(caps)) t.equal(value, true, `${name} is supported here`);
  t.equal(capabilities(), caps, 'probed once and cached');
  t.ok(Object.isFrozen(caps));
});

t.test('constants come from the system headers', async (t) => {
  t.equal(constants.P_PIDFD, 3);
  t.equal(constants.MADV_PAGEOUT, 21);
  t.equal(constants.PIDFD_NONBLOCK, 0o4000);
  t.equal(constants.PIDFD_INFO_SIZE, 80);
  t.ok(constants.PAGE_SIZE >= 4096);
});
