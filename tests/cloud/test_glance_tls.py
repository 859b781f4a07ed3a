#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS,
#    WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or
#    implied. See the License for the specific language governing
#    permissions and limitations under the License.

"""The command line's ``--store glance`` against the cloud's Keystone,
with Glance on HTTPS.

The operator's setup: ``[snapshot_glance]`` has password auth against
Keystone, Glance answers on HTTPS (stunnel in front of the cloud's Glance,
with a certificate of a CA this test makes) and ``cafile`` names that CA.
A snapshot of a plain libvirt guest (shut off, on the stack's libvirtd)
goes into Glance as the demo project's image. With another CA in
``cafile`` the command fails with one line and leaves nothing: no image
record, no temporary file, the guest as it was.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest

from tests.cloud import conftest
from tests.functional import guest as fguest
from tests.polling import wait_until

#: A snapshot of a 16 MiB guest (about 15 s on 2 cores).
pytestmark = pytest.mark.timeout(300)

GLANCE_PORT = 9292
CLI = os.path.join(conftest.CLOUD_DIR, 'venv', 'bin', 'nova-snapshot-ext')


def _openssl(*args, cwd):
    subprocess.run(['openssl', *args], cwd=cwd, check=True,
                   capture_output=True)


def make_ca(workdir, name):
    """A CA of this test: NAME.key and NAME.pem in WORKDIR."""
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
             '-subj', '/CN=nova-snapshot-ext test %s' % name,
             '-keyout', name + '.key', '-out', name + '.pem', cwd=workdir)
    return os.path.join(workdir, name + '.pem')


def make_server_cert(workdir, ca):
    """A certificate for 127.0.0.1 signed by CA: server.pem, server.key."""
    with open(os.path.join(workdir, 'san.cnf'), 'w') as f:
        f.write('subjectAltName = IP:127.0.0.1\n')
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
             '-keyout', 'server.key', '-out', 'server.csr', cwd=workdir)
    _openssl('x509', '-req', '-in', 'server.csr', '-days', '1',
             '-CA', ca + '.pem', '-CAkey', ca + '.key', '-CAcreateserial',
             '-extfile', 'san.cnf', '-out', 'server.pem', cwd=workdir)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def listening(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope='module')
def tls(tmp_path_factory):
    """stunnel on HTTPS in front of the cloud's Glance: (url, ca, other_ca)."""
    workdir = str(tmp_path_factory.mktemp('tls'))
    ca = make_ca(workdir, 'ca')
    other_ca = make_ca(workdir, 'other-ca')
    make_server_cert(workdir, 'ca')
    port = free_port()
    conf = os.path.join(workdir, 'stunnel.conf')
    with open(conf, 'w') as f:
        f.write('foreground = yes\npid =\n\n[glance]\n'
                'accept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\n'
                'cert = %s\nkey = %s\n' % (
                    port, GLANCE_PORT, os.path.join(workdir, 'server.pem'),
                    os.path.join(workdir, 'server.key')))
    log = open(os.path.join(workdir, 'stunnel.log'), 'w')
    proc = subprocess.Popen(['stunnel4', conf], stdout=log,
                            stderr=subprocess.STDOUT)

    def stunnel_log():
        with open(log.name) as f:
            return 'stunnel did not start: %s' % f.read()
    wait_until(lambda: proc.poll() is not None or listening(port), 30,
               interval=0.2, message=stunnel_log)
    if proc.poll() is not None:
        pytest.fail(stunnel_log())
    yield 'https://127.0.0.1:%d' % port, ca, other_ca
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope='module')
def plain_guest():
    """A shut-off libvirt guest (qcow2 with data) on the stack's libvirtd."""
    conn = fguest.connect()
    workdir = tempfile.mkdtemp(prefix='tls-', dir=fguest.work_root())
    os.chmod(workdir, 0o755)
    disks = fguest.make_disks(workdir, 'qcow2', data_mb=16)
    name = 'nse-cloud-tls-%s' % uuid.uuid4().hex[:8]
    dom = conn.defineXML(fguest.domain_xml(
        name, disks, os.path.join(workdir, 'serial.log')))
    yield name, dom, disks, workdir
    dom.undefine()
    conn.close()
    shutil.rmtree(workdir, ignore_errors=True)


def cli_conf(path, url, cafile, tempdir):
    """[snapshot_glance] as an operator writes it.

    The demo user's password (from the cloud's openrc) and Glance's HTTPS
    endpoint.
    """
    rc = conftest.openrc('openrc')
    old = os.umask(0o077)
    try:
        with open(path, 'w') as f:
            f.write(
                '[snapshot]\ntemp_directory = %(tmp)s\n'
                'journal_directory = %(tmp)s/journal\n'
                'lock_path = %(tmp)s/locks\n\n'
                '[snapshot_glance]\nauth_type = password\n'
                'auth_url = %(auth)s\nusername = %(user)s\n'
                'password = %(password)s\nproject_name = %(project)s\n'
                'user_domain_name = Default\nproject_domain_name = Default\n'
                'region_name = %(region)s\nendpoint_override = %(url)s\n'
                'cafile = %(cafile)s\n' % {
                    'tmp': tempdir, 'auth': rc['OS_AUTH_URL'],
                    'user': rc['OS_USERNAME'],
                    'password': rc['OS_PASSWORD'],
                    'project': rc['OS_PROJECT_NAME'],
                    'region': rc['OS_REGION_NAME'], 'url': url,
                    'cafile': cafile})
    finally:
        os.umask(old)


def snapshot(tmp_path, url, cafile, domain, name):
    """The command with its configuration: (the process, its temp dir)."""
    conf = str(tmp_path / 'cli.conf')
    tempdir = str(tmp_path / 'tmp')
    cli_conf(conf, url, cafile, tempdir)
    return subprocess.run(
        [CLI, '--config-file', conf, 'snapshot', domain, '--name', name,
         '--store', 'glance', '--json'],
        capture_output=True, text=True, timeout=600), tempdir


def leftovers(tempdir):
    found = []
    for root, dirs, files in os.walk(tempdir):
        if os.path.basename(root) == 'locks':
            continue
        found += [os.path.join(root, n) for n in files]
    return found


def test_password_auth_and_https_with_the_right_ca(tls, plain_guest, demo,
                                                   images, tmp_path):
    url, ca, _ = tls
    domain, dom, disks, _ = plain_guest
    xml = dom.XMLDesc(0)
    name = 'nse-tls-%s' % uuid.uuid4().hex[:8]
    images.append(name)

    proc, tempdir = snapshot(tmp_path, url, ca, domain, name)

    assert proc.returncode == 0, proc.stderr
    image = demo.run('image', 'show', '-f', 'json', name)
    assert image['status'] == 'active', image
    assert image['disk_format'] == 'qcow2', image
    props = image.get('properties') or {}
    assert props.get('image_type') == 'snapshot', image
    assert props.get('snapshot_method') == 'cold', image
    # The demo project owns it: the password auth was the demo user's.
    assert image['owner'] == demo.sdk.current_project_id, image
    # The data is the guest's: Glance's copy, read back through the API.
    out = tmp_path / 'image.qcow2'
    demo.run('image', 'save', '--file', str(out), name)
    check = fguest.check_image(str(out), 'qcow2', disks.size)
    assert check.data_sha256 == disks.data_sha256
    assert dom.XMLDesc(0) == xml
    assert leftovers(tempdir) == []


def test_https_with_a_wrong_ca_fails_in_one_line_and_leaves_nothing(
        tls, plain_guest, demo, tmp_path):
    url, _, other_ca = tls
    domain, dom, _, _ = plain_guest
    xml = dom.XMLDesc(0)
    name = 'nse-tls-bad-%s' % uuid.uuid4().hex[:8]

    proc, tempdir = snapshot(tmp_path, url, other_ca, domain, name)

    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    print('with another CA: %s' % proc.stderr.strip())
    assert len(lines) == 1, proc.stderr
    assert 'certificate' in lines[0].lower() or 'ssl' in lines[0].lower(), (
        lines)
    listed = demo.run('image', 'list', '--name', name, '-f', 'json')
    assert listed == [], listed
    assert dom.XMLDesc(0) == xml
    assert dom.isActive() == 0
    assert leftovers(tempdir) == []
