# The Ansible deployment (ansible/, SPEC §10).
#
#   make check-ansible   ansible-lint and ansible-playbook --syntax-check
#                        (part of make test: fast, touches no host)
#   make test-deploy     applies site.yml to throwaway test hosts on this
#                        machine, twice, and uses the cluster through each
#                        gateway: the API, the replica, the live channel
#                        across gateways, each worker's metrics
#                        (tests/deploy/run.sh and use.sh; slow, root only)

.PHONY: check-ansible
check-ansible:
	$(Q)cd ansible && ansible-lint --nocolor -q . && \
		ansible-playbook -i inventory/example site.yml --syntax-check >/dev/null && \
		echo "ansible ok"

.PHONY: test-deploy
test-deploy:
	@scripts/deps.sh deploy
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tests/deploy/run.sh
