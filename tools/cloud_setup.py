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

"""What tools/cloud.sh makes through the cloud's own APIs, from the top
of the repository: ``python -m tools.cloud_setup identity`` (projects,
users, roles, the catalog, the openrc files; Keystone must run), then
``resources`` (aggregates, flavors, the test images, the Tempest
workspace; every service must run).

Run with the cloud's venv; reads $CLOUD_DIR/secrets. Passwords go from
that file to the APIs and into files of mode 0600, never onto a command
line.
"""

import configparser
import datetime
import io
import os
import subprocess
import sys
import tempfile

import openstack

from tests import polling

STACK_DIR = os.environ.get('STACK_DIR', '/var/tmp/nova-snapshot-ext-stack')
CLOUD_DIR = os.environ.get('CLOUD_DIR', os.path.join(STACK_DIR, 'cloud'))
TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
GUEST_DIR = os.environ.get('GUEST_DIR', os.path.join(STACK_DIR, 'guest'))
HOST = '127.0.0.1'
KEYSTONE = 'http://%s:5000/v3' % HOST
REGION = 'RegionOne'
SERVICES = [
    # name, type, port and path of the endpoint
    ('glance', 'image', 9292, ''),
    ('placement', 'placement', 8778, ''),
    ('nova', 'compute', 8774, '/v2.1'),
    ('neutron', 'network', 9696, ''),
]
FLAVORS = [('nse.tiny', 192, 1), ('nse.small', 256, 1)]
#: The availability zones (one aggregate each) and their compute hosts.
ZONES = {'local': ['local', 'local2'], 'rbd': ['rbd']}
GUEST_IMAGE = 'nse-guest'
GUEST_CMDLINE = 'console=ttyS0 loglevel=4 panic=-1 no_timer_check'


def secrets():
    values = {}
    with open(os.path.join(CLOUD_DIR, 'secrets')) as f:
        for line in f:
            key, _, value = line.strip().partition('=')
            values[key] = value
    return values


def connect(project='admin', user='admin', password_key='ADMIN_PASS'):
    return openstack.connect(
        auth_url=KEYSTONE, project_name=project, username=user,
        password=secrets()[password_key], user_domain_name='Default',
        project_domain_name='Default', region_name=REGION,
        identity_api_version='3')


def restart_compute(host, extra=None, timeout=180):
    """Restart nova-compute of HOST with EXTRA appended to its nova.conf
    (``$CLOUD_DIR/etc/nova-compute-HOST-extra.conf``; None: without one);
    return once the service reported up after the restart.
    """
    path = os.path.join(CLOUD_DIR, 'etc', 'nova-compute-%s-extra.conf'
                        % host)
    if extra is None:
        if os.path.exists(path):
            os.unlink(path)
    else:
        # As the host's nova.conf: its user's group may read it, nobody
        # else.
        conf = os.stat(os.path.join(CLOUD_DIR, 'etc',
                                    'nova-compute-%s.conf' % host))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, 'w') as f:
            os.fchown(f.fileno(), conf.st_uid, conf.st_gid)
            os.fchmod(f.fileno(), 0o640)
            f.write(extra)
    subprocess.run(['bash', os.path.join(TOOLS_DIR, 'cloud.sh'), 'restart',
                    'nova-compute-' + host], check=True,
                   capture_output=True)
    # The old process is gone: a report from now on is the new one's.
    restarted = datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None).isoformat()
    conn = connect()

    def up():
        services = list(conn.compute.services(binary='nova-compute',
                                              host=host))
        return (services and services[0].state == 'up'
                and (services[0].updated_at or '') > restarted)
    polling.wait_until(up, timeout, interval=2, message='nova-compute on '
                       '%s is not up after its restart' % host)


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        f.write(text)


def openrc(project, user, password):
    return ''.join('export %s=%s\n' % kv for kv in [
        ('OS_AUTH_URL', KEYSTONE), ('OS_IDENTITY_API_VERSION', '3'),
        ('OS_REGION_NAME', REGION), ('OS_PROJECT_NAME', project),
        ('OS_PROJECT_DOMAIN_NAME', 'Default'), ('OS_USERNAME', user),
        ('OS_USER_DOMAIN_NAME', 'Default'), ('OS_PASSWORD', password)])


def identity():
    sec = secrets()
    conn = connect()
    ident = conn.identity
    roles = {r.name: r for r in ident.roles()}
    for name in ('member', 'reader', 'service'):
        if name not in roles:
            roles[name] = ident.create_role(name=name)
    domain = ident.find_domain('default')
    projects = {}
    for name in ('service', 'demo'):
        projects[name] = (ident.find_project(name, domain_id=domain.id)
                          or ident.create_project(name=name,
                                                  domain_id=domain.id))
    users = [('demo', 'demo', sec['DEMO_PASS'], ['member', 'reader'])]
    users += [(svc, 'service', sec['SERVICE_PASS'], ['admin', 'service'])
              for svc, _, _, _ in SERVICES]
    for name, project, password, user_roles in users:
        user = ident.find_user(name, domain_id=domain.id)
        if user is None:
            user = ident.create_user(name=name, password=password,
                                     domain_id=domain.id,
                                     default_project_id=projects[project].id)
        for role in user_roles:
            ident.assign_project_role_to_user(projects[project], user,
                                              roles[role])
    for name, kind, port, path in SERVICES:
        service = ident.find_service(name) or ident.create_service(
            name=name, type=kind)
        for interface in ('public', 'internal', 'admin'):
            if not list(ident.endpoints(service_id=service.id,
                                        interface=interface)):
                ident.create_endpoint(
                    service_id=service.id, interface=interface,
                    url='http://%s:%d%s' % (HOST, port, path),
                    region_id=REGION)
    write_private(os.path.join(CLOUD_DIR, 'openrc'),
                  openrc('demo', 'demo', sec['DEMO_PASS']))
    write_private(os.path.join(CLOUD_DIR, 'admin-openrc'),
                  openrc('admin', 'admin', sec['ADMIN_PASS']))


def upload(conn, name, path, disk_format, **properties):
    image = conn.image.find_image(name)
    if image is not None:
        return image
    return conn.image.create_image(
        name=name, filename=path, disk_format=disk_format,
        container_format=disk_format if disk_format in ('aki', 'ari')
        else 'bare', visibility='public', wait=True, timeout=120,
        allow_duplicates=True, **properties)


def resources():
    conn = connect()
    compute = conn.compute
    for zone, hosts in ZONES.items():
        agg = compute.find_aggregate(zone)
        if agg is None:
            agg = compute.create_aggregate(name=zone, availability_zone=zone)
        for host in set(hosts) - set(agg.hosts or []):
            compute.add_host_to_aggregate(agg, host)
    flavors = {}
    for name, ram, disk in FLAVORS:
        flavors[name] = compute.find_flavor(name) or compute.create_flavor(
            name=name, ram=ram, vcpus=1, disk=disk, is_public=True)
    kernel = upload(conn, GUEST_IMAGE + '-kernel',
                    os.path.join(GUEST_DIR, 'vmlinuz'), 'aki')
    ramdisk = upload(conn, GUEST_IMAGE + '-ramdisk',
                     os.path.join(GUEST_DIR, 'initrd.gz'), 'ari')
    with tempfile.TemporaryDirectory() as tmp:
        disk = os.path.join(tmp, 'disk.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk,
                        '64M'], check=True)
        image = upload(conn, GUEST_IMAGE, disk, 'qcow2',
                       kernel_id=kernel.id, ramdisk_id=ramdisk.id,
                       os_command_line=GUEST_CMDLINE)
    tempest(image, flavors)


def tempest(image, flavors):
    sec = secrets()
    workspace = os.path.join(CLOUD_DIR, 'tempest')
    if not os.path.isdir(os.path.join(workspace, 'etc')):
        # The workspace registry of the cloud, not the user's.
        subprocess.run([os.path.join(os.path.dirname(sys.executable),
                                     'tempest'), 'init', '--workspace-path',
                        os.path.join(CLOUD_DIR, 'tempest-workspaces.yaml'),
                        workspace],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    conf = configparser.RawConfigParser(interpolation=None)
    conf.optionxform = str
    settings = {
        'DEFAULT': {'log_dir': os.path.join(workspace, 'logs'),
                    'log_file': 'tempest.log'},
        'auth': {'admin_username': 'admin', 'admin_password':
                 sec['ADMIN_PASS'], 'admin_project_name': 'admin',
                 'admin_domain_name': 'Default',
                 'use_dynamic_credentials': 'true',
                 'create_isolated_networks': 'false',
                 'tempest_roles': 'member,reader'},
        'identity': {'uri_v3': KEYSTONE, 'auth_version': 'v3',
                     'region': REGION},
        'identity-feature-enabled': {'api_v2': 'false'},
        'compute': {'image_ref': image.id, 'image_ref_alt': image.id,
                    'flavor_ref': flavors['nse.tiny'].id,
                    'flavor_ref_alt': flavors['nse.small'].id,
                    'build_timeout': '300', 'region': REGION,
                    'max_microversion': 'latest',
                    'min_compute_nodes': str(sum(map(len, ZONES.values()))),
                    # Tempest's servers go to zone local, and a test that
                    # wants another host (unshelve to a host) finds
                    # local2 there: Nova moves no server across zones.
                    'compute_volume_common_az': 'local'},
        'compute-feature-enabled': dict(dict.fromkeys((
            'snapshot', 'pause', 'suspend', 'shelve', 'console_output'),
            'true'), **dict.fromkeys((
                'resize', 'cold_migration', 'live_migration', 'vnc_console',
                'serial_console', 'spice_console', 'rescue',
                'interface_attach', 'attach_encrypted_volume',
                'config_drive', 'metadata_service'), 'false')),
        'image': {'region': REGION, 'build_timeout': '300'},
        'image-feature-enabled': {'api_v1': 'false', 'api_v2': 'true',
                                  'do_secure_hash': 'true'},
        'network': {'region': REGION},
        'placement': {'region': REGION},
        'validation': {'run_validation': 'false'},
        'service_available': dict(dict.fromkeys((
            'nova', 'glance', 'neutron', 'placement'), 'true'),
            **dict.fromkeys(('cinder', 'swift', 'horizon'), 'false')),
    }
    conf.read_dict(settings)
    text = io.StringIO()
    conf.write(text)
    write_private(os.path.join(workspace, 'etc', 'tempest.conf'),
                  text.getvalue())


def main():
    {'identity': identity, 'resources': resources}[sys.argv[1]]()


if __name__ == '__main__':
    main()
